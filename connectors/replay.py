"""Replay a recorded capture into a Kafka topic, at recorded or accelerated speed.

The offline demo and the tests feed the live path this way: a Parquet file of canonical ticks
(``run-job simulate`` writes one) or a JSON Lines capture of canonical ticks goes into the
ticks topic in the wire format of connectors/tick_codec.py, paced by the ticks' own
timestamps divided by ``speed`` (``max`` sends as fast as the broker takes them). JSON Lines
are sent as recorded, bad lines included, so the consumer's dead-letter path sees them too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickflow.connectors.kafka_client import DEFAULT_TICKS_TOPIC, client_settings, ensure_topic
from tickflow.connectors.tick_codec import decode_tick_values, encode_tick_values, kept_indices
from tickflow.engine.errors import SourceError

CHUNK_ROWS = 5_000
DEFAULT_LINGER_MS = 5


def replay_producer_settings(linger_ms: int) -> dict[str, Any]:
    """librdkafka settings of a replay's producer that waits ``linger_ms`` to fill a record
    batch, whatever the topic's format: a deep local queue, and no message given up.

    Above the default wait, batches are cut by time only: librdkafka's size caps (1 MB, and
    10,000 messages here) would otherwise end them early (1 MB is about 3,900 ticks of 257
    bytes: at 50K ticks/s some 13 batches a second whatever the linger), and every stored
    batch costs the embedded broker on each later fetch (bench/soak.py)."""
    queue = {"queue.buffering.max.messages": 1_000_000, "message.timeout.ms": 0}
    if linger_ms <= DEFAULT_LINGER_MS:
        return {**queue, "linger.ms": linger_ms, "batch.num.messages": 10_000}
    return {**queue, "linger.ms": linger_ms, "batch.num.messages": 1_000_000,  # the maximum
            "batch.size": 256 << 20, "message.max.bytes": 300 << 20}


def parse_speed(speed: str | float | None) -> float | None:
    """``max`` (None: no pacing), ``10x``, ``0.5x`` or a number; the recorded pace is 1."""
    if speed is None:
        return None
    if isinstance(speed, int | float):
        value = float(speed)
    else:
        text = speed.strip().lower()
        if text in ("max", "inf", "unlimited"):
            return None
        try:
            value = float(text[:-1] if text.endswith("x") else text)
        except ValueError:
            msg = f"--speed: expected max, 10x or a number, found {speed!r}"
            raise SourceError(msg) from None
    if not value > 0:
        msg = f"--speed: expected a speed > 0, found {speed!r}"
        raise SourceError(msg)
    return value


def _parquet_chunks(path: Path) -> Iterator[tuple[list[tuple[bytes, bytes]], np.ndarray]]:
    import pyarrow.parquet as pq

    # pre_buffer (pyarrow's default) caches every row group read until the file is closed:
    # a long replay held the whole capture by its end (bench/soak.py found it)
    file = pq.ParquetFile(path, pre_buffer=False)
    for batch in file.iter_batches(batch_size=CHUNK_ROWS):
        values = encode_tick_values(batch).to_pylist()
        keys = batch.column("symbol").to_pylist()
        ts = pc.cast(batch.column("timestamp"), pa.int64()).to_numpy(zero_copy_only=False)
        yield ([((k or "").encode(), v.encode()) for k, v in zip(keys, values, strict=True)],
               np.asarray(ts, dtype=np.int64))


def _jsonl_chunks(path: Path) -> Iterator[tuple[list[tuple[bytes, bytes]], np.ndarray]]:
    import gzip

    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        while True:
            lines = [ln.rstrip(b"\r\n") for ln in _take(f, CHUNK_ROWS)]
            lines = [ln for ln in lines if ln.strip()]
            if not lines:
                return
            batch, rejected = decode_tick_values(lines)
            kept = kept_indices(len(lines), rejected)
            keys = [b""] * len(lines)
            ts = np.full(len(lines), -1, dtype=np.int64)  # bad lines: sent at once
            for row, index in enumerate(kept):
                keys[int(index)] = (batch.column("symbol")[row].as_py() or "").encode()
            if len(kept):
                ts[kept] = pc.cast(batch.column("timestamp"), pa.int64()).to_numpy(
                    zero_copy_only=False)
            yield list(zip(keys, lines, strict=True)), ts


def _take(f: Any, n: int) -> list[bytes]:
    out = []
    for line in f:
        out.append(line)
        if len(out) >= n:
            break
    return out


def capture_chunks(path: str | Path) -> Iterator[tuple[list[tuple[bytes, bytes]], np.ndarray]]:
    """``(key, value)`` pairs and tick timestamps (µs; -1 unknown) of a capture, in chunks."""
    p = Path(path)
    if not p.exists():
        msg = f"replay: no capture at {p}"
        raise SourceError(msg)
    if p.suffix == ".parquet":
        return _parquet_chunks(p)
    if p.suffix in (".db", ".sqlite", ".sqlite3"):  # the collector's -S output
        from tickflow.connectors.sqlite_ticks import sqlite_chunks

        return sqlite_chunks(p)
    if p.name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        return _jsonl_chunks(p)
    msg = (f"replay: {p} is neither Parquet (.parquet), JSON Lines (.jsonl, .jsonl.gz) nor "
           f"SQLite (.db, .sqlite)")
    raise SourceError(msg)


class Pacer:
    """Keeps a replay at ``speed`` times the capture's recorded pace (``max``: no waiting)."""

    def __init__(self, speed: str | float | None):
        self.pace = parse_speed(speed)
        self.first_us: int | None = None
        self.start = time.monotonic()

    def wait(self, t_us: int, producer: Any) -> None:
        """Before producing the tick recorded at ``t_us``: sleep until it is due, serving the
        producer's callbacks first."""
        if self.pace is None or t_us < 0:
            return
        if self.first_us is None:
            self.first_us = t_us
        delay = self.start + (t_us - self.first_us) / 1e6 / self.pace - time.monotonic()
        if delay > 0.001:
            producer.poll(0)
            time.sleep(delay)


def produce_retrying(producer: Any, topic: str, value: bytes, key: bytes | None,
                     headers: list[tuple[str, bytes]] | None = None) -> None:
    """Produce one message, waiting for room while the producer's queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key or None, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def replay_to_kafka(path: str | Path, bootstrap: str, topic: str = DEFAULT_TICKS_TOPIC,
                    speed: str | float | None = "max", *, partitions: int = 1,
                    stamp_send_time: bool = False, stop: threading.Event | None = None,
                    producer_settings: dict[str, Any] | None = None) -> int:
    """Produce every tick of a capture to ``topic`` (created when missing); returns the count.

    Args:
        path: Parquet or JSON Lines capture of canonical ticks.
        bootstrap: Kafka bootstrap servers.
        topic: the ticks topic.
        speed: ``max``, ``10x``, ... relative to the recorded timestamps.
        partitions: partitions of the topic when it has to be created (key = symbol).
        stamp_send_time: add the ``tickflow-sent-us`` header (for latency measurements).
        stop: set it to end the replay early.
        producer_settings: extra librdkafka producer settings; a ``linger.ms`` above 5
            also lifts the batch size caps (``replay_producer_settings``).
    """
    from confluent_kafka import Producer

    from tickflow.connectors.kafka_topics import SENT_HEADER

    pacer = Pacer(speed)
    linger_ms = int((producer_settings or {}).get("linger.ms", DEFAULT_LINGER_MS))
    settings = client_settings(bootstrap, **{**replay_producer_settings(linger_ms),
                                             **(producer_settings or {})})
    ensure_topic(settings, topic, partitions)
    producer = Producer(settings)
    sent = 0
    for pairs, ts in capture_chunks(path):
        for i, (key, value) in enumerate(pairs):
            if stop is not None and stop.is_set():
                producer.flush()
                return sent
            pacer.wait(int(ts[i]), producer)
            headers = [(SENT_HEADER, str(time.time_ns() // 1000).encode())] \
                if stamp_send_time else None
            produce_retrying(producer, topic, value, key, headers)
            sent += 1
        producer.poll(0)
    producer.flush()
    return sent
