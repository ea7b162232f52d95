"""``kind: kafka`` sink: result rows to a topic, keyed, acknowledged before the live executor
commits the input offsets.

Deliveries are tracked per ``write``: ``delivery_mark()`` names the latest write and
``acknowledged_mark()`` the latest one whose messages, and every earlier write's, the broker has
acknowledged, so the live executor commits the offsets of acknowledged batches while later ones
are still in flight, without ever flushing on its thread.

Checkpointed live jobs: the sink records the end offset per partition at each checkpoint and,
after a resume, skips each re-computed message that the killed run had already written past it
(read back from the topic), so the topic holds every output message once, provided this job is
the topic's only writer. A checkpoint taken while running does not flush: it takes the delivery
mark (``checkpoint_mark``) and is written once ``checkpoint_at(mark)`` gives the ends after
exactly those writes, all acknowledged (engine/state/recovery.py ``Checkpointer.begin``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from tickflow.connectors.base import ConnectorConfig, RunContext, Sink, sink
from tickflow.connectors.embedded_broker import EmbeddedBroker, resolve_bootstrap
from tickflow.connectors.formats import Format, check_format, row_encoder
from tickflow.connectors.kafka_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_FEATURES_TOPIC,
    KafkaSecurity,
    Setting,
    client_settings,
    ensure_topic,
    partition_count,
    wait_for_broker,
)
from tickflow.connectors.kafka_topics import read_to_end
from tickflow.engine.errors import SinkError


class KafkaSinkConfig(ConnectorConfig):
    """Write result rows as keyed messages: JSON or Avro one per row, Arrow IPC many per key."""

    kind: Literal["kafka"] = "kafka"
    bootstrap: str = Field(DEFAULT_BOOTSTRAP, description="bootstrap servers, or `embedded` "
                                                          "(the source's broker when it is "
                                                          "embedded too)")
    topic: str = Field(DEFAULT_FEATURES_TOPIC, min_length=1, description="topic to write")
    key: str = Field("symbol", description="column whose value is the message key")
    columns: list[str] | None = Field(None, min_length=1,
                                      description="columns in each message (default: all)")
    only_rows_with: list[str] | None = Field(
        None, min_length=1, description="write only rows where one of these columns is "
                                        "non-zero (e.g. the signal columns)")
    create_partitions: int = Field(1, ge=1, description="partitions when the sink creates "
                                                        "the topic")
    linger_ms: int = Field(5, ge=0, description="producer batching delay (0: a write's "
                                                "messages go out at once, in one request)")
    security: KafkaSecurity = Field(
        default_factory=KafkaSecurity,  # type: ignore[arg-type]
        description="as the source's: protocol, mechanism, credential variable names")
    producer: dict[str, Setting] = Field(default_factory=dict,
                                         description="extra librdkafka producer settings")
    format: Format = Field("json", description="message format: json | avro (Confluent "
                                               "wire format) | arrow (IPC, many rows each)")
    schema_registry: str | None = Field(None, description="Schema Registry URL (format: avro)")

    _format_needs_registry = model_validator(mode="after")(check_format)


# ``linger_ms: 0`` (a live job's) gives librdkafka 0.5 ms, not 0. At 0 its sender takes a
# write's messages as they are queued, a request for one or a few each; the idempotent producer
# allows 5 in flight, so a write of many signals waits for answers while the sender thread
# spins. The live benchmark's job at 20K ticks/s offered, 5 s, 3 pairs (docs/performance.md):
# 3.4-4.2 requests a write -> 0.96-1.13; the sender thread 1.02-1.48 -> 0.22-0.94 s of CPU; the
# produce call on the driver's thread p50 312-367 -> 52-64 µs; signals acknowledged p50
# 8.9-20.8 -> 7.7-15.4 ms after it. (50 µs still split writes under load: tests/kafka/
# test_sink_requests.py failed 1 run in 3.)
NO_LINGER_MS = 0.5


def producer_settings(cfg: KafkaSinkConfig) -> dict[str, Any]:
    """The sink's librdkafka producer settings (no connection or security): one definition,
    which the live benchmark's bare consumer (its floor) produces its signals with too."""
    return {"linger.ms": cfg.linger_ms or NO_LINGER_MS, "acks": "all", "enable.idempotence": True,
            "message.timeout.ms": 0, "queue.buffering.max.messages": 1_000_000,
            "batch.num.messages": 10_000, **cfg.producer}


@sink("kafka", config=KafkaSinkConfig,
      summary="result rows as JSON messages to a Kafka topic (one per row, keyed)")
class KafkaSink(Sink):
    """Produces rows; ``flush`` returns only when every message is acknowledged, re-sending
    the ones a restarted (empty) broker refused, so the live executor can commit after it."""

    config: KafkaSinkConfig
    is_durable_on_flush = True

    def __init__(self, config: KafkaSinkConfig, context: RunContext):
        super().__init__(config, context)
        self.producer: Any = None
        self.broker: EmbeddedBroker | None = None
        self.count = 0
        # (key, value, its write's delivery callback) of deliveries that failed, to resend
        self._failed: list[tuple[bytes, bytes, Callable[[Any, Any], None]]] = []
        self._writes = 0  # write() calls that produced messages: the latest one's mark
        self._unacked: dict[int, int] = {}  # write mark -> messages not acknowledged (in order)
        self._checkpointed = False  # seek() was called: a checkpointed run
        self._resume: dict[str, Any] | None = None
        # checkpointed runs: per write mark, the offset after its messages per partition, until
        # folded into _acked_ends: per partition, the offset after every write up to the
        # latest checkpoint_at (at open: the partition's end)
        self._write_ends: dict[int, dict[int, int]] = {}
        self._acked_ends: dict[int, int] = {}
        self._dupes: Counter[tuple[bytes, bytes]] = Counter()
        # where each of those messages is (partition, offset), oldest first: a skipped one is
        # covered by a checkpoint taken after it, and only then
        self._dupe_at: dict[tuple[bytes, bytes], deque[tuple[int, int]]] = {}
        self.skipped = 0
        self._encode: Callable[[pa.RecordBatch], list[tuple[bytes, bytes]]] | None = None

    def required_columns(self) -> list[str]:
        return [self.config.key, *(self.config.columns or []),
                *(self.config.only_rows_with or [])]

    def open(self, schema: pa.Schema) -> None:
        from confluent_kafka import Producer

        cfg = self.config
        bootstrap = self.context.extra.get("kafka_bootstrap") \
            if cfg.bootstrap == "embedded" else None
        if bootstrap is None:
            bootstrap, self.broker = resolve_bootstrap(cfg.bootstrap)
        wait_for_broker(bootstrap, timeout_s=30, what=f"kafka sink {cfg.topic}")
        self.settings = client_settings(bootstrap, cfg.security, **producer_settings(cfg))
        ensure_topic(self.settings, cfg.topic, cfg.create_partitions)
        self.producer = Producer(self.settings)
        self._client_settings = client_settings(bootstrap, cfg.security)
        if self._checkpointed:
            self._ends_and_tail()

    def _on_delivery(self, mark: int) -> Callable[[Any, Any], None]:
        """The delivery callback of every message of write ``mark``: counts it acknowledged,
        or keeps it to be sent again."""
        unacked = self._unacked

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self._failed.append((msg.key(), msg.value(), delivered))
                return
            left = unacked[mark] - 1
            if left:
                unacked[mark] = left
            else:
                del unacked[mark]
            if self._checkpointed:
                p, end = msg.partition(), msg.offset() + 1
                ends = self._write_ends.setdefault(mark, {})
                ends[p] = max(ends.get(p, 0), end)

        return delivered

    def delivery_mark(self) -> int:
        """The latest write that produced messages (0: none yet)."""
        return self._writes

    def acknowledged_mark(self) -> int:
        """The latest write whose messages, and every earlier write's, are acknowledged
        (serves delivery reports and resends failed deliveries first; never blocks)."""
        self.producer.poll(0)
        self._resend_failed()
        unacked = self._unacked
        return next(iter(unacked)) - 1 if unacked else self._writes

    # checkpointed runs: a resume drops the re-computed messages the topic already holds

    def seek(self, position: dict[str, Any] | None) -> None:
        """Before ``open``: the checkpoint's end offsets (None: a run from the start).

        The rows after the checkpoint are computed again after a resume; the messages for
        them that the killed run had already written (the topic's tail past these offsets)
        are read at ``open`` and each is skipped once when it is produced again, so the topic
        holds every message once.
        """
        self._checkpointed = True
        self._resume = position

    def checkpoint(self) -> dict[str, Any]:
        """Flush, then the offset after the last message per partition."""
        self.flush()
        self.producer.poll(0)
        position = self.checkpoint_at(self._writes)
        assert position is not None  # flushed: every write is acknowledged
        return position

    def checkpoint_mark(self) -> int:
        """A deferred checkpoint's mark: every write so far (sent on, not waited for)."""
        self.producer.poll(0)
        return self._writes

    def checkpoint_at(self, mark: int) -> dict[str, Any] | None:
        """The offset after the messages of writes up to ``mark``, per partition, once they
        are all acknowledged; None before (never blocks). Later writes, even acknowledged,
        are not in it: a resume skips exactly the messages past it."""
        if self.acknowledged_mark() < mark:
            return None
        for m in sorted(m for m in self._write_ends if m <= mark):
            for p, end in self._write_ends.pop(m).items():
                self._acked_ends[p] = max(self._acked_ends.get(p, 0), end)
        return {"topic": self.config.topic,
                "offsets": {str(p): o for p, o in sorted(self._acked_ends.items())}}

    def _ends_and_tail(self) -> None:
        """Find each partition's end (and, after a resume, the messages past the checkpoint)
        by reading to the end: ListOffsets is not exact on every broker (Tansu answers with
        the last record batch's base offset), the fetch's end-of-partition event is."""
        topic = self.config.topic
        n = partition_count(self.settings, topic)
        starts: dict[int, int] = {}
        if self._resume is not None:
            try:
                starts = {int(p): int(o) for p, o in dict(self._resume["offsets"]).items()}
            except (KeyError, TypeError, ValueError):
                raise SinkError(f"kafka sink {topic}: not a kafka sink position: "
                                f"{self._resume!r}") from None
            if self._resume.get("topic") != topic:
                raise SinkError(f"kafka sink {topic}: the checkpoint is of topic "
                                f"{self._resume.get('topic')!r}; run with --reset-state")
        scan = {p: starts.get(p, -1) for p in range(n)}  # -1: from ListOffsets' answer
        offsets: list[int] = []
        ends, tail = read_to_end(self._client_settings, topic, scan, offsets=offsets)
        for p, o in starts.items():
            if ends.get(p, 0) < o:
                raise SinkError(f"kafka sink {topic}: partition {p} ends at offset "
                                f"{ends.get(p, 0):,}, before the checkpoint's {o:,} (the "
                                f"topic was truncated or re-created); run with --reset-state")
        # a checkpoint covers the tail past the resumed one only as its messages are produced
        # again (skipped): one taken before that must not name them, or a later resume from it
        # would not skip them and they would be written twice
        self._acked_ends = {p: starts.get(p, e) for p, e in ends.items()}
        self._dupes = Counter(row for p, row in tail if p in starts)
        self._dupe_at = {}
        for (p, row), offset in zip(tail, offsets, strict=True):
            if p in starts:
                self._dupe_at.setdefault(row, deque()).append((p, offset))

    def write(self, batch: pa.RecordBatch) -> None:
        cfg = self.config
        if cfg.only_rows_with:
            mask = np.zeros(batch.num_rows, dtype=bool)
            for c in cfg.only_rows_with:
                mask |= np.asarray(batch.column(c).to_numpy(zero_copy_only=False)) != 0
            if not mask.any():
                return
            if cfg.columns:  # filter the written columns only, not every feature
                batch = batch.select(list(dict.fromkeys([cfg.key, *cfg.columns])))
            batch = batch.filter(pa.array(mask))
        if self._encode is None:
            self._encode = row_encoder(cfg.format, cfg.topic, batch.schema, cfg.key,
                                       cfg.columns, cfg.schema_registry)
        self._produce(self._encode(batch))

    def _produce(self, rows: list[tuple[bytes, bytes]]) -> None:
        skipped: dict[int, int] = {}
        if self._dupes:
            rows = self._drop_written(rows, skipped)
        if not rows and not skipped:
            return
        self._writes += 1
        if skipped:  # already in the topic: covered by a checkpoint at this mark or later
            self._write_ends[self._writes] = skipped
        if not rows:
            return
        self._unacked[self._writes] = len(rows)
        delivered = self._on_delivery(self._writes)
        batch = getattr(self.producer, "produce_batch", None)  # confluent-kafka since 2025
        if batch is not None:
            # one call, one wake-up of librdkafka's sender (not one a message). Messages refused
            # (local queue full) are a suffix: a slot frees only when a delivery report is
            # served, by poll() on this thread; they are produced again, in order
            messages = [{"key": key, "value": value} for key, value in rows]
            if batch(self.config.topic, messages, on_delivery=delivered) < len(messages):
                self._send([(m["key"], m["value"], delivered) for m in messages if "_error" in m])
        else:
            produce, topic = self.producer.produce, self.config.topic
            for key, value in rows:
                try:
                    produce(topic, value=value, key=key, on_delivery=delivered)
                except BufferError:  # local queue full
                    self._send([(key, value, delivered)])
        self.producer.poll(0)
        self.count += len(rows)

    def _send(self, rows: list[tuple[bytes, bytes, Callable[[Any, Any], None]]]) -> None:
        """Produce, letting deliveries drain while the local queue is full."""
        produce, topic = self.producer.produce, self.config.topic
        for key, value, delivered in rows:
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.producer.poll(0)

    def _drop_written(self, rows: list[tuple[bytes, bytes]],
                      ends: dict[int, int]) -> list[tuple[bytes, bytes]]:
        """Rows minus the ones the topic already holds from before a resume (each once);
        ``ends`` gets, per partition, the offset after the skipped ones."""
        dupes, out = self._dupes, []
        for row in rows:
            if dupes.get(row, 0):
                dupes[row] -= 1
                if not dupes[row]:
                    del dupes[row]
                p, offset = self._dupe_at[row].popleft()
                ends[p] = max(ends.get(p, 0), offset + 1)
                self.skipped += 1
            else:
                out.append(row)
        return out

    def in_flight(self) -> int:
        """Messages written but not acknowledged yet (serves delivery reports first)."""
        self.producer.poll(0)
        self._resend_failed()
        return len(self.producer)

    def _resend_failed(self) -> bool:
        """Produce again what delivery reports said failed (a broker outage, a topic
        re-created); True when there was any."""
        if not self._failed:
            return False
        failed, self._failed = self._failed, []
        ensure_topic(self.settings, self.config.topic, self.config.create_partitions)
        self._send(failed)  # each keeps its write's callback: acknowledged once, in its write
        return True

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every message written so far is acknowledged (broker outages are
        waited for; ``timeout_s`` bounds the wait, then SinkError)."""
        start = time.monotonic()
        while True:
            self.producer.flush(1.0)
            if self._resend_failed():
                continue
            if len(self.producer) == 0:
                return
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                msg = (f"kafka sink {self.config.topic}: {len(self.producer)} messages not "
                       f"acknowledged after {timeout_s:.0f} s")
                raise SinkError(msg)

    def close(self) -> str | None:
        if self.producer is None:
            return None
        self.flush()
        self.producer = None  # disconnects from the broker
        if self.broker is not None:
            self.broker.stop()
        return f"kafka: wrote {self.count:,} messages to topic {self.config.topic}"
