"""``kind: kafka``: ticks from a Kafka topic (source) and result rows to a topic (sink).

The source reads explicit partitions with ``assign()`` (no consumer-group rebalancing: on the
embedded Tansu broker a group join takes seconds, ``assign()`` reads 100K messages in about
0.1 s), decodes each consumed batch at once (connectors/tick_codec.py), keeps unusable
messages and broken ticks in the dead-letter sink, and commits an offset only when the live
executor says the outputs for it are written (``commit``). A broker that goes away is waited
for; when it comes back empty (Tansu keeps everything in memory) the source reads the new
topic from its beginning instead of skipping what was produced meanwhile.

Checkpointed live jobs (``--state-backend rocksdb|tiledb``): the source's ``position()`` is the
offset of the next message per partition (with the topic's broker id) and ``seek()`` assigns
there; the sink records the end offset per partition at each checkpoint and, after a resume,
skips each re-computed message that the killed run had already written past it (read back
from the topic), so the topic holds every output message once, provided this job is the
topic's only writer.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Sink,
    Source,
    sink,
    source,
)
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.embedded_broker import EmbeddedBroker, broker_answers, resolve_bootstrap
from tickflow.connectors.kafka_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_FEATURES_TOPIC,
    DEFAULT_TICKS_TOPIC,
    KafkaSecurity,
    client_settings,
    ensure_topic,
    partition_count,
    topic_id,
    wait_for_broker,
)
from tickflow.connectors.formats import Format, check_format, row_encoder, tick_decoder
from tickflow.connectors.tick_quality import TickQuality, TickQualityConfig
from tickflow.engine.durations import Seconds, SecondsOrZero
from tickflow.engine.errors import SinkError, SourceError

SENT_HEADER = "tickflow-sent-us"
"""Optional message header: when the producer sent the tick (µs since the epoch), for
tick-to-signal latency; without it the message timestamp (ms) is used."""

Setting = str | int | float | bool


class KafkaSourceConfig(ConnectorConfig):
    """Read canonical ticks (JSON, Avro or Arrow IPC; key = symbol) from a Kafka topic."""

    kind: Literal["kafka"] = "kafka"
    bootstrap: str = Field(DEFAULT_BOOTSTRAP,
                           description="bootstrap servers, or `embedded` to start a local "
                                       "broker for the run")
    topic: str = Field(DEFAULT_TICKS_TOPIC, min_length=1, description="topic of the ticks")
    group_id: str | None = Field(None, description="consumer group whose committed offsets "
                                                   "are resumed (default: tickflow-JOBNAME)")
    start_offset: Literal["earliest", "latest"] = Field(
        "earliest", description="where to start when the group has no committed offset")
    partitions: list[int] | None = Field(None, description="partitions to read "
                                                           "(default: all)")
    create_partitions: int = Field(1, ge=1, description="partitions of the topic when the "
                                                        "source has to create it")
    batch_size: int = Field(20_000, ge=1, description="most messages per consumed batch")
    linger_ms: int = Field(20, ge=0, le=60_000,
                           description="longest wait to fill a batch (latency vs throughput)")
    connect_timeout_s: SecondsOrZero = Field(30.0, ge=0, description="how long to wait for a broker "
                                                             "that is down at start")
    end_when_idle_s: Seconds | None = Field(
        None, gt=0, description="end the run after this long without a message (a bounded "
                                "run, e.g. export a topic once); default: run until stopped")
    quality: TickQualityConfig = Field(
        default_factory=TickQualityConfig,  # type: ignore[arg-type]
        description="broken-tick checks: policy (dead_letter | drop | keep), max_lateness, "
                    "check_crossed")
    dead_letter_path: str | None = Field("out/dead_letters.jsonl",
                                         description="JSON Lines file of unusable messages")
    dead_letter_topic: str | None = Field(None, description="also produce them to this topic")
    security: KafkaSecurity = Field(
        default_factory=KafkaSecurity,  # type: ignore[arg-type]
        description="security_protocol, sasl_mechanism, ssl_ca_location and the NAMES of the "
                    "environment variables holding the credentials (username_env, "
                    "password_env)")
    consumer: dict[str, Setting] = Field(default_factory=dict,
                                         description="extra librdkafka consumer settings")
    format: Format = Field("json", description="message format: json | avro (Confluent "
                                               "wire format) | arrow (IPC, many ticks each)")
    schema_registry: str | None = Field(None, description="Schema Registry URL (format: avro)")

    _format_needs_registry = model_validator(mode="after")(check_format)


@dataclass
class ConsumedBatch:
    """One consumed batch: the ticks for the kernels and where to commit once they are out."""

    ticks: pa.RecordBatch
    offsets: dict[int, int]
    message_count: int
    sent_us: np.ndarray
    dead_letter_count: int = 0
    flagged: dict[str, int] = field(default_factory=dict)


@source("kafka", config=KafkaSourceConfig,
        summary="canonical ticks from a Kafka topic (JSON), offsets committed after output")
class KafkaSource(Source):
    """Consumes ticks batch by batch; ``poll`` + ``commit`` for the live executor, ``batches``
    for a bounded research run over a topic."""

    config: KafkaSourceConfig

    def __init__(self, config: KafkaSourceConfig, context: RunContext,
                 status: Callable[[str], None] | None = None):
        super().__init__(config, context)
        self.status = status or _stderr_status(context)
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = ""
        self.consumer: Any = None
        self.quality = TickQuality(config.quality)
        self.dead_letters: DeadLetters | None = None
        self._dlq_producer: Any = None
        self._partitions: list[int] = []
        self._position: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._down_since: float | None = None
        self._topic_id: str | None = None
        self._broker_error = False
        self._said_down = False
        self._pending: dict[int, int] = {}
        self._last_message = time.monotonic()
        self.message_count = 0
        self._assigned: dict[int, int] = {}
        self._fresh_start = False  # seek(None): ignore the group's committed offsets
        self._seek_topic_id: str | None = None
        self._seeked = False  # seek(position) before open: checked once connected

    def schema(self) -> pa.Schema:
        return CANONICAL_TICK_SCHEMA

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> KafkaSource:
        """Connect (waiting for a broker that is down), create the topic if needed, assign."""
        from confluent_kafka import Consumer

        cfg = self.config
        self.bootstrap, self.broker = resolve_bootstrap(cfg.bootstrap)
        wait_for_broker(self.bootstrap, timeout_s=cfg.connect_timeout_s,
                        what=f"kafka source {self.label}",
                        on_retry=lambda waited: self.status(
                            f"waiting for Kafka at {self.bootstrap} ({waited:.0f} s)"))
        self.settings = client_settings(
            self.bootstrap, cfg.security, **{
                "group.id": cfg.group_id or f"tickflow-{self.context.job_name}",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest", "enable.partition.eof": False,
                "fetch.wait.max.ms": max(1, cfg.linger_ms), "fetch.min.bytes": 1,
                "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20,
                "queued.min.messages": max(100_000, 2 * cfg.batch_size),
                "isolation.level": "read_committed", "error_cb": self._on_error,
                **cfg.consumer})
        n = ensure_topic(self.settings, cfg.topic, cfg.create_partitions)
        self._partitions = list(cfg.partitions if cfg.partitions is not None else range(n))
        self._topic_id = topic_id(self.settings, cfg.topic)
        self.dead_letters = DeadLetters(cfg.dead_letter_path, forward=self._forward_dead,
                                        source=self.label)
        self._decoder = tick_decoder(cfg.format, cfg.topic, cfg.schema_registry)
        self.consumer = Consumer(self.settings)
        if self._seeked:
            self._check_seek()
        self._assign()
        self._last_message = time.monotonic()
        return self

    @property
    def label(self) -> str:
        return self.config.id or self.config.topic

    def _committed_on_broker(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self.config.topic, p) for p in self._partitions]
        return {tp.partition: tp.offset for tp in self.consumer.committed(tps, timeout=10)
                if tp.offset >= 0}

    def _assign(self, fresh_broker: bool = False) -> None:
        """Assign every partition at its committed offset, else at ``start_offset``; after a
        broker came back, at our own position, or at the beginning when the broker is new."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

        committed = self._committed_on_broker()
        start = OFFSET_END if self.config.start_offset == "latest" else OFFSET_BEGINNING
        if fresh_broker:
            where = dict.fromkeys(self._partitions, OFFSET_BEGINNING)
            self._pending.clear()
        else:
            base = {} if self._fresh_start else committed
            where = {p: self._position.get(p, base.get(p, start)) for p in self._partitions}
        self.consumer.assign([TopicPartition(self.config.topic, p, o)
                              for p, o in where.items()])
        self._assigned = where
        self._committed = committed

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            self._broker_error = True

    def _forward_dead(self, record: bytes, reason: str) -> None:
        topic = self.config.dead_letter_topic
        if topic is None:
            return
        if self._dlq_producer is None:
            from confluent_kafka import Producer

            ensure_topic(self.settings, topic)
            self._dlq_producer = Producer(client_settings(self.bootstrap, self.config.security))
        self._dlq_producer.produce(topic, value=record, key=reason.encode())
        self._dlq_producer.poll(0)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self._dlq_producer is not None:
            self._dlq_producer.flush(10)
        if self.dead_letters is not None:
            self.dead_letters.close()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    # ------------------------------------------------------------------ consuming

    def poll(self, timeout_s: float | None = None) -> ConsumedBatch | None:
        """The next batch (None when nothing arrived in time). Waits out a broker outage."""
        from confluent_kafka import KafkaError

        if self.consumer is None:
            self.open()
        cfg = self.config
        wait = cfg.linger_ms / 1000 if timeout_s is None else timeout_s
        messages = self.consumer.consume(cfg.batch_size, timeout=max(wait, 0.001))
        good = [m for m in messages if m.error() is None]
        broker_error = False
        if len(good) < len(messages):
            for m in messages:
                err = m.error()
                if err is None:
                    continue
                if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.UNKNOWN_TOPIC_OR_PART,
                                  KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
                    broker_error = True
                elif err.code() != KafkaError._PARTITION_EOF:
                    self.status(f"kafka source {self.label}: {err.str()}")
        if broker_error:
            self._broker_error = True
        if good:  # fetched before any outage: use them; the check waits for the next poll
            self._last_message = time.monotonic()
            return self._decode(good)
        if self._broker_error:
            self._wait_for_broker()
        return None

    def _wait_for_broker(self) -> None:
        """After a connection error: report once, wait, and when the broker answers again,
        check whether it is a new (empty) one before reading on."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if not broker_answers(self.bootstrap, timeout_s=1.0):
            if not self._said_down:
                self._said_down = True
                self.status(f"kafka source {self.label}: broker at {self.bootstrap} went "
                            f"away; waiting for it (everything consumed so far is in the "
                            f"outputs)")
            time.sleep(0.2)
            return
        # it answers: an empty broker (Tansu keeps nothing) lost the topic and our commits
        topic_missing = partition_count(self.settings, self.config.topic) == 0
        ensure_topic(self.settings, self.config.topic, max(self.config.create_partitions,
                                                           len(self._partitions)))
        lost_commits = bool(self._committed) and not self._committed_on_broker()
        new_id = None
        for _ in range(10):  # a broker that has just started may not describe topics yet
            new_id = topic_id(self.settings, self.config.topic)
            if new_id is not None or self._topic_id is None:
                break
            time.sleep(0.2)
        recreated = None not in (new_id, self._topic_id) and new_id != self._topic_id
        self._topic_id = new_id
        fresh = topic_missing or lost_commits or recreated
        if self.config.partitions is None:
            # a new topic may have other partitions (Tansu auto-creates topics with 4 when
            # a client asks for one that is missing)
            count = partition_count(self.settings, self.config.topic)
            self._partitions = list(range(count or len(self._partitions)))
        self._assign(fresh_broker=fresh)
        if fresh:
            self._position.clear()
        if self._said_down or fresh:
            self.status(f"kafka source {self.label}: broker at {self.bootstrap} is back "
                        f"after {now - self._down_since:.1f} s"
                        + ("; it is empty, reading the topic from its beginning"
                           if fresh else ""))
        self._down_since = None
        self._said_down = False
        self._broker_error = False
        self._last_message = time.monotonic()

    def _decode(self, messages: list[Any]) -> ConsumedBatch:
        # one C call per message and field, in comprehensions: this loop is the hot path
        assert self.dead_letters is not None
        dead_before = self.dead_letters.total
        values: list[bytes] = [m.value() for m in messages]
        if len(self._partitions) == 1:
            offsets = {messages[-1].partition(): messages[-1].offset() + 1}
        else:
            offsets = {m.partition(): m.offset() + 1 for m in messages}
        first = messages[0].headers()
        if first and any(h[0] == SENT_HEADER for h in first):
            sent = np.array([_sent_us(m.headers()) for m in messages], dtype=np.int64)
        else:
            sent = np.array([m.timestamp()[1] for m in messages], dtype=np.int64) * 1000
        keep: list[int] = list(range(len(messages)))
        if not all(values):
            keep = [i for i, v in enumerate(values) if v]
            for i, v in enumerate(values):
                if not v:
                    m = messages[i]
                    self.dead_letters.add("empty_value", b"", topic=m.topic(),
                                          partition=m.partition(), offset=m.offset())
            values = [values[i] for i in keep]
        self.message_count += len(messages)
        ticks, rejected, origin = self._decoder(values)
        for index, reason in rejected:
            m = messages[keep[index]]
            self.dead_letters.add(reason, values[index], topic=m.topic(),
                                  partition=m.partition(), offset=m.offset())
        rows = np.asarray(keep, dtype=np.int64)[origin]
        flagged = self.quality.check(ticks)
        if flagged and self.config.quality.policy == "dead_letter":
            for row, reason in flagged:
                m = messages[int(rows[row])]
                self.dead_letters.add(reason, m.value(), topic=m.topic(),
                                      partition=m.partition(), offset=m.offset())
        counts: dict[str, int] = {}
        for _, reason in flagged:
            counts[reason] = counts.get(reason, 0) + 1
        if flagged and self.config.quality.policy != "keep":
            mask = np.ones(ticks.num_rows, dtype=bool)
            mask[[i for i, _ in flagged]] = False
            rows = rows[mask]
        ticks = self.quality.apply(ticks, flagged)
        for p, o in offsets.items():
            self._position[p] = o
        return ConsumedBatch(ticks, offsets, len(messages), sent[rows],
                             self.dead_letters.total - dead_before, counts)

    # ------------------------------------------------------------------ checkpoints

    def position(self) -> dict[str, Any]:
        """Where the next batch starts: per partition the offset of the next message to read.

        With the topic's name and broker id, so that a checkpoint cannot be applied to another
        topic, or to the same name re-created by a restarted (empty) broker.
        """
        offsets: dict[str, int] = {}
        for p in self._partitions:
            if p not in self._position:  # nothing read yet: where it was assigned, resolved
                self._position[p] = self._resolve(p, self._assigned.get(p, -2))
            offsets[str(p)] = self._position[p]
        return {"topic": self.config.topic, "topic_id": self._topic_id, "offsets": offsets}

    def _resolve(self, partition: int, offset: int) -> int:
        """A logical offset (beginning -2, end -1) as the partition's real offset now."""
        from confluent_kafka import TopicPartition

        if offset >= 0:
            return offset
        if offset == -1:  # the end: read to it (ListOffsets is not exact on every broker)
            ends, _ = read_to_end(self._client_settings(), self.config.topic, {partition: -1})
            return ends.get(partition, 0)
        low, _ = self.consumer.get_watermark_offsets(
            TopicPartition(self.config.topic, partition), timeout=10, cached=False)
        return int(low)

    def seek(self, position: dict[str, Any] | None) -> None:
        """Resume at a ``position()``; None starts at ``start_offset`` and ignores the group's
        committed offsets (a run from empty state must read from where that state began).

        Raises:
            SourceError: the position is of another topic, of an earlier incarnation of the
                topic (a restarted memory-only broker), or past the end of a partition.
        """
        self._fresh_start = position is None
        if position is None:
            self._position.clear()
        else:
            try:
                topic = str(position["topic"])
                wanted = {int(p): int(o) for p, o in dict(position["offsets"]).items()}
            except (KeyError, TypeError, ValueError):
                raise SourceError(f"kafka source {self.label}: not a kafka position: "
                                  f"{position!r}") from None
            if topic != self.config.topic:
                raise SourceError(f"kafka source {self.label}: the checkpoint is of topic "
                                  f"{topic!r}, the job reads {self.config.topic!r}; run with "
                                  f"--reset-state to start over")
            self._seek_topic_id = position.get("topic_id")
            self._position = wanted
        self._seeked = position is not None
        if self.consumer is not None:
            if position is not None:
                self._check_seek()
            self._assign()

    def _client_settings(self) -> dict[str, Any]:
        return client_settings(self.bootstrap, self.config.security)

    def _check_seek(self) -> None:
        recorded = self._seek_topic_id
        if None not in (recorded, self._topic_id) and recorded != self._topic_id:
            raise SourceError(f"kafka source {self.label}: the checkpoint's offsets are of an "
                              f"earlier topic {self.config.topic!r} (id {recorded}; the broker "
                              f"now has id {self._topic_id}, e.g. a restarted memory-only "
                              f"broker); run with --reset-state to start over")
        ends, _ = read_to_end(self._client_settings(), self.config.topic,
                              {p: o for p, o in self._position.items()})
        for p, o in self._position.items():
            if o > ends.get(p, 0):
                raise SourceError(f"kafka source {self.label}: the checkpoint resumes partition "
                                  f"{p} at offset {o:,}, past its end ({ends.get(p, 0):,}): "
                                  f"the topic was truncated or re-created; run with "
                                  f"--reset-state")

    def commit(self, offsets: dict[int, int]) -> bool:
        """Commit offsets whose outputs are written. On failure (broker away) they stay
        pending and go out with the next commit; returns whether everything is committed."""
        from confluent_kafka import KafkaException, TopicPartition

        self._pending.update(offsets)
        if not self._pending:
            return True
        if self.dead_letters is not None:
            self.dead_letters.flush()
        tps = [TopicPartition(self.config.topic, p, o) for p, o in self._pending.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException:
            return False
        self._committed.update(self._pending)
        self._pending.clear()
        return True

    def lag(self) -> int:
        """Messages behind the partitions' high watermarks (cached; 0 when unknown)."""
        from confluent_kafka import TopicPartition

        total = 0
        for p, pos in self._position.items():
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.config.topic, p), cached=True)
            except Exception:
                continue
            total += max(0, high - pos) if high >= 0 else 0
        return total

    def mark_active(self) -> None:
        """Restart the idle clock of ``end_when_idle_s`` (after a slow start: kernels loaded,
        state restored), so that a bounded run does not end before it polled."""
        self._last_message = time.monotonic()

    def is_idle_end(self) -> bool:
        """Whether a bounded run (``end_when_idle_s``) has been idle long enough to end."""
        idle = self.config.end_when_idle_s
        return idle is not None and time.monotonic() - self._last_message >= idle

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Ticks until ``end_when_idle_s`` passes with no message (no offsets committed:
        only the live executor knows when outputs are written)."""
        if self.config.end_when_idle_s is None:
            msg = (f"kafka source {self.label}: a research run over a topic needs "
                   f"end_when_idle_s (or run the job in live mode)")
            raise SourceError(msg)
        self.open()
        while not self.is_idle_end():
            batch = self.poll()
            if batch is not None and batch.ticks.num_rows:
                yield batch.ticks.select(columns) if columns else batch.ticks


def _sent_us(headers: list[tuple[str, bytes]] | None) -> int:
    for name, value in headers or ():
        if name == SENT_HEADER:
            return int(value)
    return 0


def _stderr_status(context: RunContext) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not context.quiet:
            print(text, file=sys.stderr, flush=True)

    return say


# ---------------------------------------------------------------------------- sink

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
    linger_ms: int = Field(5, ge=0, description="producer batching delay")
    security: KafkaSecurity = Field(
        default_factory=KafkaSecurity,  # type: ignore[arg-type]
        description="as the source's: protocol, mechanism, credential variable names")
    producer: dict[str, Setting] = Field(default_factory=dict,
                                         description="extra librdkafka producer settings")
    format: Format = Field("json", description="message format: json | avro (Confluent "
                                               "wire format) | arrow (IPC, many rows each)")
    schema_registry: str | None = Field(None, description="Schema Registry URL (format: avro)")

    _format_needs_registry = model_validator(mode="after")(check_format)


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
        self._failed: list[tuple[bytes, bytes]] = []
        self._checkpointed = False  # seek() was called: a checkpointed run
        self._resume: dict[str, Any] | None = None
        self._ends: dict[int, int] = {}  # per partition: offset after our last delivery
        self._dupes: Counter[tuple[bytes, bytes]] = Counter()
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
        self.settings = client_settings(bootstrap, cfg.security, **{
            "linger.ms": cfg.linger_ms, "acks": "all", "enable.idempotence": True,
            "message.timeout.ms": 0, "queue.buffering.max.messages": 1_000_000,
            "batch.num.messages": 10_000, **cfg.producer})
        ensure_topic(self.settings, cfg.topic, cfg.create_partitions)
        self.producer = Producer(self.settings)
        self._client_settings = client_settings(bootstrap, cfg.security)
        if self._checkpointed:
            self._ends_and_tail()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed.append((msg.key(), msg.value()))
        elif self._checkpointed:
            p = msg.partition()
            self._ends[p] = max(self._ends.get(p, 0), msg.offset() + 1)

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
        return {"topic": self.config.topic,
                "offsets": {str(p): o for p, o in sorted(self._ends.items())}}

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
        ends, tail = read_to_end(self._client_settings, topic, scan)
        for p, o in starts.items():
            if ends.get(p, 0) < o:
                raise SinkError(f"kafka sink {topic}: partition {p} ends at offset "
                                f"{ends.get(p, 0):,}, before the checkpoint's {o:,} (the "
                                f"topic was truncated or re-created); run with --reset-state")
        self._ends = ends
        self._dupes = Counter(row for p, row in tail if p in starts)

    def write(self, batch: pa.RecordBatch) -> None:
        cfg = self.config
        if cfg.only_rows_with:
            mask = np.zeros(batch.num_rows, dtype=bool)
            for c in cfg.only_rows_with:
                mask |= np.asarray(batch.column(c).to_numpy(zero_copy_only=False)) != 0
            if not mask.any():
                return
            batch = batch.filter(pa.array(mask))
        if self._encode is None:
            self._encode = row_encoder(cfg.format, cfg.topic, batch.schema, cfg.key,
                                       cfg.columns, cfg.schema_registry)
        self._produce(self._encode(batch))

    def _produce(self, rows: list[tuple[bytes, bytes]]) -> None:
        produce, topic = self.producer.produce, self.config.topic
        if self._dupes:
            rows = self._drop_written(rows)
        for key, value in rows:
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=self._delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.05)
        self.producer.poll(0)
        self.count += len(rows)

    def _drop_written(self, rows: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Rows minus the ones the topic already holds from before a resume (each once)."""
        dupes, out = self._dupes, []
        for row in rows:
            if dupes.get(row, 0):
                dupes[row] -= 1
                if not dupes[row]:
                    del dupes[row]
                self.skipped += 1
            else:
                out.append(row)
        return out

    def in_flight(self) -> int:
        """Messages written but not acknowledged yet (serves delivery reports first)."""
        self.producer.poll(0)
        if self._failed:
            failed, self._failed = self._failed, []
            ensure_topic(self.settings, self.config.topic, self.config.create_partitions)
            self.count -= len(failed)
            self._produce(failed)
        return len(self.producer)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every message written so far is acknowledged (broker outages are
        waited for; ``timeout_s`` bounds the wait, then SinkError)."""
        start = time.monotonic()
        while True:
            self.producer.flush(1.0)
            if self._failed:
                failed, self._failed = self._failed, []
                ensure_topic(self.settings, self.config.topic, self.config.create_partitions)
                self.count -= len(failed)
                self._produce(failed)
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


def read_to_end(settings: dict[str, Any], topic: str, starts: dict[int, int],
                timeout_s: float = 60.0) -> tuple[dict[int, int], list[tuple[int, tuple[bytes,
                                                                                     bytes]]]]:
    """Read partitions from ``starts`` (-1: from the broker's reported end) to their end.

    Returns the end offset per partition (from the end-of-partition event of the fetch,
    which is exact) and the ``(partition, (key, value))`` of every message read.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    ends: dict[int, int] = {}
    rows: list[tuple[int, tuple[bytes, bytes]]] = []
    if not starts:
        return ends, rows
    consumer = Consumer({**settings, "group.id": f"tickflow-scan-{topic}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10, "isolation.level": "read_committed"})
    try:
        where = {}
        for p, o in starts.items():
            if o < 0:
                o = int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                       cached=False)[1])
            where[p] = max(0, o)
        consumer.assign([TopicPartition(topic, p, o) for p, o in where.items()])
        todo = set(where)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                msg = f"kafka topic {topic}: could not read partitions {sorted(todo)} to the end"
                raise SinkError(msg)
            for m in consumer.consume(10_000, timeout=0.1):
                err = m.error()
                if err is None:
                    rows.append((m.partition(), (m.key() or b"", m.value() or b"")))
                elif err.code() == KafkaError._PARTITION_EOF:
                    ends[m.partition()] = int(m.offset())
                    todo.discard(m.partition())
                else:
                    raise SinkError(f"kafka topic {topic}: {err.str()}")
    finally:
        consumer.close()
    return ends, rows


def topic_partitions(bootstrap: str, topic: str) -> int:
    """Partition count of ``topic`` at ``bootstrap`` (0 when it does not exist)."""
    return partition_count(client_settings(bootstrap), topic)
