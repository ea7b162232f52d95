"""``kind: kafka`` source: ticks from a Kafka topic, offsets committed after output.

Reads explicit partitions with ``assign()`` (a group join takes seconds on the embedded Tansu
broker; ``group:`` members use one only to share partitions, kafka_group.py), decodes each
batch at once (kafka_decode.py), dead-letters unusable messages, and commits an offset only once
the outputs for it are written. A broker that goes away is waited for; one that comes back
empty is read from the beginning. Checkpointed jobs: ``position()``/``seek()`` per partition.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext, Source, source
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.embedded_broker import EmbeddedBroker, broker_answers, resolve_bootstrap
from tickflow.connectors.formats import tick_decoder
from tickflow.connectors.kafka_client import (
    client_settings,
    ensure_topic,
    partition_count,
    topic_id,
    wait_for_broker,
)
from tickflow.connectors.kafka_commits import OffsetCommits
from tickflow.connectors.kafka_decode import (
    decode_messages,
    usable_messages,
)
from tickflow.connectors.kafka_group import GroupMember, Handler, partition_source_data
from tickflow.connectors.kafka_source_config import (
    ConsumedBatch,
    KafkaSourceConfig,
    consumer_settings,
)
from tickflow.connectors.kafka_topics import read_to_end
from tickflow.engine.errors import SourceError
from tickflow.engine.start_up_gc import paused

__all__ = ["ConsumedBatch", "KafkaSource", "KafkaSourceConfig"]



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
        self.dead_letters: DeadLetters | None = None
        self._dlq_producer: Any = None
        self._partitions: list[int] = []
        self._position: dict[int, int] = {}
        self._down_since: float | None = None
        self._topic_id: str | None = None
        self._broker_error = False
        self._said_down = False
        self.offsets = OffsetCommits(config.topic)
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
            self.bootstrap, cfg.security,
            **consumer_settings(cfg, cfg.group_id or f"tickflow-{self.context.job_name}"),
            error_cb=self._on_error, on_commit=self.offsets.on_commit)
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
            self.offsets.forget()
        else:
            base = {} if self._fresh_start else committed
            where = {p: self._position.get(p, base.get(p, start)) for p in self._partitions}
        self.consumer.assign([TopicPartition(self.config.topic, p, o)
                              for p, o in where.items()])
        self._assigned = where
        self.offsets.committed = committed

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
        if self.consumer is None:
            self.open()
        cfg = self.config
        wait = cfg.linger_ms / 1000 if timeout_s is None else timeout_s
        # no collection while a poll's messages live: confluent-kafka's Message objects are
        # GC-tracked, so 20,000 of them set off some 28 young-generation passes a poll (0.1-0.2
        # µs a tick in the drain), while they hold no cycles and are freed by refcount
        with paused():
            # what has arrived, at once; only when nothing has, wait for the first message (a
            # consume of n waits for n messages or the timeout: a batch would wait out linger_ms)
            messages = self.consumer.consume(cfg.batch_size, timeout=0)
            if not messages:
                messages = self.consumer.consume(1, timeout=max(wait, 0.001))
                if messages and cfg.batch_size > 1:
                    messages.extend(self.consumer.consume(cfg.batch_size - 1, timeout=0))
            good, lost, problems = usable_messages(messages)
            # fetched before any outage: use them; the check waits for the next poll
            batch = self._decode(good) if good else None
            del messages, good  # freed before the collector resumes (it would walk them all)
        self._broker_error |= lost
        for problem in problems:
            self.status(f"kafka source {self.label}: {problem}")
        if batch is not None:
            self._last_message = time.monotonic()
            return batch
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
        lost_commits = bool(self.offsets.committed) and not self._committed_on_broker()
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
        assert self.dead_letters is not None
        self.message_count += len(messages)
        batch = decode_messages(messages, self._decoder, self.dead_letters,
                                len(self._partitions) == 1)
        self._position.update(batch.offsets)
        return batch

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
        """Commit offsets whose outputs are written, waiting for the broker. On failure (broker
        away) they stay pending and go out with the next commit; returns whether everything
        is committed."""
        if self.dead_letters is not None:
            self.dead_letters.flush()
        return self.offsets.commit(self.consumer, offsets)

    def commit_async(self, offsets: dict[int, int]) -> bool:
        """As ``commit``, without waiting: the broker's answer is served by a later poll (a
        failed commit's offsets go out again with the next one)."""
        if self.dead_letters is not None:
            self.dead_letters.flush()
        return self.offsets.commit_async(self.consumer, offsets)

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

    def group_member(self, on_assign: Handler, on_revoke: Handler) -> GroupMember | None:
        """This process's membership (``group:`` set; see kafka_group.py), else None."""
        return None if self.config.group is None else \
            GroupMember(self.config, self.context, on_assign, on_revoke)

    def partition_source_data(self, data: dict[str, Any], partition: int) -> dict[str, Any]:
        """The source's YAML for the consumer of one owned partition."""
        return partition_source_data(self.config, self.context, data, partition)

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



def _stderr_status(context: RunContext) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not context.quiet:
            print(text, file=sys.stderr, flush=True)

    return say
