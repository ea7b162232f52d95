"""``kind: kafka`` source settings, and the batch the source hands to the live executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tickflow.connectors.base import ConnectorConfig
from tickflow.connectors.formats import Format, check_format
from tickflow.connectors.kafka_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TICKS_TOPIC,
    KafkaSecurity,
    Setting,
)
from tickflow.engine.durations import Seconds, SecondsOrZero


class KafkaGroup(BaseModel):
    """Run the live job as one of N member processes sharing the topic's partitions.

    The members join a Kafka consumer group only to learn which partitions each owns; each
    owned partition is consumed, computed and checkpointed on its own (its keys' state, its
    offset, its output part), so a member that dies leaves checkpoints another can resume.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="the consumer group the members join "
                                             "(default: tickflow-JOBNAME)")
    session_timeout: Seconds = Field(6.0, description="a member silent this long is "
                                                      "considered dead; its partitions move")
    heartbeat: Seconds = Field(0.5, description="how often a member tells the group it lives")
    takeover_timeout: Seconds = Field(60.0, description="longest wait for a partition's "
                                                        "state folder to be given up by its "
                                                        "previous owner")


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
                           description="longest wait for a message when none has arrived (a "
                                       "batch is what has arrived, up to batch_size)")
    connect_timeout_s: SecondsOrZero = Field(30.0, ge=0,
                                             description="how long to wait for a broker "
                                                         "that is down at start")
    end_when_idle_s: Seconds | None = Field(
        None, gt=0, description="end the run after this long without a message (a bounded "
                                "run, e.g. export a topic once); default: run until stopped")
    quality: Any = Field(None, description="not a source setting: broken ticks follow the "
                                           "job's `quality:` block, the same in every mode")
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
    group: KafkaGroup | None = Field(
        None, description="run as one of N member processes sharing the topic's partitions "
                          "(id, session_timeout, heartbeat, takeover_timeout; docs/cluster.md)")

    _format_needs_registry = model_validator(mode="after")(check_format)

    @field_validator("quality")
    @classmethod
    def _quality_is_the_jobs(cls, value: Any) -> None:
        """A source-level ``quality:`` (older jobs) is told where the one policy lives."""
        if value is not None:
            raise ValueError(
                "`quality:` is no longer a Kafka source setting: broken ticks are handled by the "
                "job's own `quality:` block, the same in every mode (bad_price: drop|keep|fail, "
                "out_of_order: drop|sort|fail, lateness, dead_letter_path); move it there")
        return None

    @model_validator(mode="after")
    def _group_owns_partitions(self) -> KafkaSourceConfig:
        if self.group is not None and self.partitions is not None:
            raise ValueError("with `group:` the consumer group decides which partitions each "
                             "member reads; remove `partitions:`")
        return self


@dataclass
class ConsumedBatch:
    """One consumed batch: the ticks for the kernels and where to commit once they are out."""

    ticks: pa.RecordBatch
    offsets: dict[int, int]
    message_count: int
    sent_us: np.ndarray
    dead_letter_count: int = 0


def consumer_settings(cfg: KafkaSourceConfig, group_id: str) -> dict[str, Any]:
    """The source's librdkafka consumer settings (no connection, security or callbacks):
    one definition, which the live benchmark's bare consumer (its floor) uses as well."""
    return {
        "group.id": group_id,
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": False,
        # a broker may hold an empty fetch this long even when ticks come meanwhile
        # (Tansu does): short, so that a caught-up job sees new ticks at once
        "fetch.wait.max.ms": max(1, min(cfg.linger_ms, 2)), "fetch.min.bytes": 1,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20,
        "queued.min.messages": max(100_000, 2 * cfg.batch_size),
        # once the local queue holds queued.min.messages, librdkafka (>= 2.x) waits this long
        # before it fetches again: its default 1 s stalled a drain 150-300 ms every ~130K
        # ticks (the queue ran dry while the next fetch was postponed; docs/performance.md)
        "fetch.queue.backoff.ms": 2,
        "isolation.level": "read_committed",
        **cfg.consumer}
