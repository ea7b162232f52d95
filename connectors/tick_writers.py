"""Where a collector puts canonical ticks: Parquet, JSON Lines or a Kafka topic.

Every writer takes tick dicts (``tickflow.connectors.coinbase.ticker_to_tick``), buffers as
little as its medium allows, and makes everything it was given durable on ``close``: the collector
calls ``close`` on Ctrl+C or SIGTERM, so nothing received is lost. The JSON of a tick is the
same everywhere (``tickflow.connectors.coinbase.tick_to_json``), which is what the Kafka tick
decoder (``tickflow.connectors.tick_codec``) reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.coinbase import tick_to_json, ticks_to_table
from tickflow.engine.errors import SinkError

LOG = logging.getLogger("tickflow.collector")


class TickWriter:
    """The writer contract: ``write`` ticks, ``maybe_flush`` on a timer, ``close`` once."""

    rows = 0

    def write(self, ticks: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def maybe_flush(self) -> None:
        return None

    def close(self) -> str:
        raise NotImplementedError


class BufferedTickWriter(TickWriter):
    """A writer that buffers ticks and flushes every ``flush_rows`` rows or ``flush_s`` seconds.

    Subclasses set ``flush_rows``, ``flush_s``, ``_buffer`` and ``_last_flush`` in their
    ``__init__``, convert ticks in ``_buffered`` and write the buffer in ``flush``.
    """

    flush_rows: int
    flush_s: float
    _buffer: list[Any]
    _last_flush: float

    def _buffered(self, ticks: list[dict[str, Any]]) -> Iterable[Any]:
        return ticks

    def write(self, ticks: list[dict[str, Any]]) -> None:
        self._buffer.extend(self._buffered(ticks))
        if len(self._buffer) >= self.flush_rows:
            self.flush()

    def maybe_flush(self) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError


class ParquetTickWriter(BufferedTickWriter):
    """Ticks to one Parquet file, a row group every ``flush_rows`` rows or ``flush_s`` seconds.

    The file is written as ``FILE.partial`` and renamed to ``FILE`` on close, so a file at the
    target path always has its footer and is readable; row groups bound the memory held.
    """

    def __init__(self, path: str | Path, *, flush_rows: int = 10_000, flush_s: float = 5.0):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows = 0
        self.row_groups = 0
        self._failed = False
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.partial, CANONICAL_TICK_SCHEMA,
                                            compression="zstd", use_dictionary=["symbol",
                                                                                "exchange"])
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.partial.unlink()  # no 0-byte partial file left behind
            msg = f"parquet output {str(self.path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from None

    def flush(self) -> None:
        """Write the buffered ticks as one row group."""
        self._last_flush = time.monotonic()
        if not self._buffer or self._failed:
            return
        try:
            self._writer.write_table(ticks_to_table(self._buffer))
        except OSError as exc:  # a full disk or a file size limit
            self._fail(exc)
        self.rows += len(self._buffer)
        self.row_groups += 1
        self._buffer = []

    def close(self) -> str:
        if self._failed:
            return f"parquet output {self.path}: not written (see the error above)"
        self.flush()
        try:
            self._writer.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            self._fail(exc)
        return f"wrote {self.rows:,} ticks in {self.row_groups} row groups to {self.path}"

    def _fail(self, exc: OSError) -> None:
        """Give up on the file: a Parquet file without its footer cannot be read, so the
        partial file is removed rather than left beside the target."""
        self._failed = True
        with contextlib.suppress(OSError):
            self._writer.close()
        with contextlib.suppress(OSError):
            self.partial.unlink()
        lost = self.rows + len(self._buffer)
        msg = (f"parquet output {str(self.path)!r}: {exc.strerror or exc}; the {lost:,} ticks "
               f"collected were not saved (a Parquet file needs its footer; --jsonl keeps "
               f"every complete line on a full disk)")
        raise SinkError(msg) from None


class JsonlTickWriter(TickWriter):
    """Ticks to a JSON Lines file, one canonical JSON object per line, flushed per message."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: Any = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            msg = f"jsonl output {str(self.path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from None

    def write(self, ticks: list[dict[str, Any]]) -> None:
        if not ticks or self._file is None:
            return
        good = self._file.tell()
        try:
            self._file.write("".join(tick_to_json(t) + "\n" for t in ticks))
            self._file.flush()
        except OSError as exc:  # a full disk or a file size limit
            self._fail(exc, good)
        self.rows += len(ticks)

    def close(self) -> str:
        if self._file is None:
            return f"jsonl output {self.path}: stopped after {self.rows:,} ticks"
        try:
            self._file.close()
        except OSError as exc:
            self._fail(exc, None)
        return f"wrote {self.rows:,} ticks to {self.path}"

    def _fail(self, exc: OSError, good: int | None) -> None:
        """Stop writing, cut a half-written last line off, and say so in one line."""
        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            file.close()  # what is still buffered cannot be written either
        if good is not None:
            with contextlib.suppress(OSError):
                os.truncate(self.path, good)
        msg = (f"jsonl output {str(self.path)!r}: {exc.strerror or exc}; stopped after "
               f"{self.rows:,} ticks, every one of them complete in the file")
        raise SinkError(msg) from None


class KafkaTickWriter(TickWriter):
    """Ticks to a Kafka topic: key = symbol, value = the canonical JSON.

    The producer is idempotent (``acks=all``), so a retry never writes a tick twice; ``close``
    waits until the broker has acknowledged every tick and fails loudly when it has not.
    ``bootstrap: embedded`` starts a broker on loopback for the collector's lifetime.
    """

    def __init__(self, bootstrap: str, topic: str, *, partitions: int = 1,
                 wait_s: float = 30.0, encode: Callable[[dict[str, Any]], bytes] | None = None):
        from confluent_kafka import Producer

        from tickflow.connectors.embedded_broker import resolve_bootstrap
        from tickflow.connectors.kafka_client import client_settings, ensure_topic, wait_for_broker

        self.topic = topic
        self.rows = 0
        self.failed = 0
        # the value of one tick: canonical JSON, or e.g. AvroTickEncoder.encode_dict
        self._encode = encode or (lambda tick: tick_to_json(tick).encode())
        self.bootstrap, self.broker = resolve_bootstrap(bootstrap)
        if self.broker is not None:
            LOG.info("started an embedded Kafka broker on %s (memory only: it stops when the "
                     "collector stops)", self.bootstrap)
        wait_for_broker(self.bootstrap, timeout_s=wait_s, what="collector kafka output",
                        on_retry=lambda s: LOG.warning("no Kafka broker at %s yet (%.0f s); "
                                                       "retrying", self.bootstrap, s))
        settings = client_settings(self.bootstrap, **{
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "compression.type": "none"})
        ensure_topic(settings, topic, partitions=partitions)
        self._settings = settings
        self._producer = Producer(settings)

    def dead_letter_forward(self, topic: str) -> Callable[[bytes, str], None]:
        """A ``DeadLetters(forward=...)`` callback producing records to ``topic`` (key =
        reason) with this writer's producer, so ``close`` flushes them too."""
        from tickflow.connectors.kafka_client import ensure_topic

        ensure_topic(self._settings, topic)

        def forward(record: bytes, reason: str) -> None:
            self._producer.produce(topic, value=record, key=reason.encode())

        return forward

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            LOG.error("kafka: a tick was not delivered to %s: %s", self.topic, err)

    def write(self, ticks: list[dict[str, Any]]) -> None:
        for tick in ticks:
            self.produce_raw(tick["symbol"].encode(), self._encode(tick))

    def produce_raw(self, key: bytes, value: bytes) -> None:
        """Produce one already encoded tick."""
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key,
                                       on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.1)
        self.rows += 1
        self._producer.poll(0)

    def close(self) -> str:
        remaining = self._producer.flush(60)
        if self.broker is not None:
            self.broker.stop()
        if remaining or self.failed:
            msg = (f"kafka: {remaining + self.failed:,} of {self.rows:,} ticks were not "
                   f"acknowledged by {self.bootstrap} (topic {self.topic})")
            raise SinkError(msg)
        return f"produced {self.rows:,} ticks to {self.bootstrap} topic {self.topic}"
