"""Membership of a multi-process live job: which of the topic's partitions this process owns.

A consumer joins the job's Kafka consumer group and subscribes to the tick topic, but reads
nothing itself: each assigned partition is paused at once and handed to ``on_assign``, which
starts that partition's own consumer, state and checkpoints. ``on_revoke`` is called inside the
rebalance, before the group gives the partitions to another member, so the handler can finish
and checkpoint them first (the eager protocol waits for it, up to ``max.poll.interval.ms``).

Measured on the embedded (Tansu) broker: joining takes about 2-3 s with the settings below
(about 23 s with librdkafka's defaults); a member killed without leaving is noticed after
``session_timeout`` and its partitions are reassigned about 2-3 s later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from tickflow.connectors.base import RunContext
from tickflow.connectors.embedded_broker import resolve_bootstrap
from tickflow.connectors.kafka_client import (
    client_settings,
    ensure_topic,
    wait_for_broker,
)
from tickflow.connectors.kafka_source_config import KafkaSourceConfig
from tickflow.engine.errors import SourceError

Handler = Callable[[list[int]], None]


def group_id(config: KafkaSourceConfig, context: RunContext) -> str:
    """The membership group: ``group.id``, else ``group_id``, else tickflow-JOBNAME."""
    assert config.group is not None
    return config.group.id or config.group_id or f"tickflow-{context.job_name}"


def offsets_group(config: KafkaSourceConfig, context: RunContext) -> str:
    """Where the partitions' own consumers commit their offsets: not the membership group,
    whose commits a broker accepts only from its current members."""
    return f"{group_id(config, context)}.offsets"


def partition_path(path: str, partition: int) -> str:
    """``out/dead_letters.jsonl`` -> ``out/dead_letters.p3.jsonl``: one file per partition."""
    p = PurePath(path)
    return str(p.with_name(f"{p.stem}.p{partition}{p.suffix}"))


def partition_source_data(config: KafkaSourceConfig, context: RunContext,
                          data: dict[str, Any], partition: int) -> dict[str, Any]:
    """The source's YAML for the consumer of one owned partition: that partition only, its
    own dead-letter file, offsets committed outside the membership group."""
    out = {k: v for k, v in data.items() if k != "group"}
    out["partitions"] = [partition]
    out["group_id"] = offsets_group(config, context)
    if config.dead_letter_path:
        out["dead_letter_path"] = partition_path(config.dead_letter_path, partition)
    return out


class GroupMember:
    """This process's place in the group; ``poll`` serves heartbeats and rebalances.

    Args:
        config: the job's Kafka source settings (``group`` set).
        context: the run's context (job name for the default group id).
        on_assign: called with the partitions this member now owns.
        on_revoke: called with the partitions it must give up, before they move.
    """

    def __init__(self, config: KafkaSourceConfig, context: RunContext, on_assign: Handler,
                 on_revoke: Handler):
        if config.group is None:
            raise SourceError("kafka source: no `group:` set, this job has one member")
        self.config = config
        self.context = context
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.owned: list[int] = []
        self.rebalanced_at = time.monotonic()
        self.consumer: Any = None
        self.id = group_id(config, context)

    def join(self) -> GroupMember:
        from confluent_kafka import Consumer

        cfg, group = self.config, self.config.group
        assert group is not None
        if cfg.bootstrap == "embedded":
            raise SourceError("kafka source: a group of member processes needs a broker they "
                              "all reach (bootstrap: host:port), not one embedded in each")
        bootstrap, _ = resolve_bootstrap(cfg.bootstrap)
        wait_for_broker(bootstrap, timeout_s=cfg.connect_timeout_s,
                        what=f"kafka group {self.id}")
        settings = client_settings(bootstrap, cfg.security, **{
            "group.id": self.id, "enable.auto.commit": False,
            "session.timeout.ms": int(group.session_timeout * 1000),
            "heartbeat.interval.ms": int(group.heartbeat * 1000),
            "max.poll.interval.ms": max(int(group.takeover_timeout * 2000), 60_000),
            "partition.assignment.strategy": "range", "fetch.max.bytes": 1 << 20})
        ensure_topic(settings, cfg.topic, cfg.create_partitions)
        self.consumer = Consumer(settings)
        self.consumer.subscribe([cfg.topic], on_assign=self._assigned,
                                on_revoke=self._revoked, on_lost=self._revoked)
        return self

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)  # each partition is read by its own consumer
        parts = sorted(tp.partition for tp in partitions)
        self.owned = parts
        self.rebalanced_at = time.monotonic()
        self.on_assign(parts)

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        parts = sorted(tp.partition for tp in partitions)
        self.on_revoke([p for p in parts if p in self.owned])
        self.owned = [p for p in self.owned if p not in parts]
        self.rebalanced_at = time.monotonic()
        consumer.unassign()

    def poll(self, timeout_s: float = 0.1) -> None:
        """Heartbeats and rebalances (the handlers run inside this call)."""
        self.consumer.poll(timeout_s)

    def leave(self) -> None:
        """Leave the group now (the others rebalance at once instead of after a timeout)."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            consumer.close()
