"""Helpers of the Kafka tests: unique topics, producing ticks, reading a topic back."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pyarrow as pa

from tickflow.connectors.kafka_client import client_settings, ensure_topic
from tickflow.connectors.tick_codec import encode_tick_rows

_COUNTER = itertools.count()


def unique(name: str) -> str:
    """A topic or group name no other test (or test process) uses."""
    return f"{name}-{os.getpid()}-{next(_COUNTER)}"


def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]],
            partitions: int = 1) -> None:
    from confluent_kafka import Producer

    ensure_topic(client_settings(bootstrap), topic, partitions)
    p = Producer(client_settings(bootstrap, **{"linger.ms": 2}))
    for key, value in pairs:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0


def produce_ticks(bootstrap: str, topic: str, ticks: pa.Table | pa.RecordBatch,
                  partitions: int = 1) -> None:
    produce(bootstrap, topic, encode_tick_rows(ticks), partitions)


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0,
               settle_s: float = 0.5) -> list[Any]:
    """Every message of ``topic`` (all partitions, from the beginning), once ``expected``
    have arrived and nothing more came for ``settle_s``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tickflow.connectors.kafka_client import partition_count

    settings = client_settings(bootstrap)
    deadline = time.monotonic() + timeout_s
    while partition_count(settings, topic) == 0:
        assert time.monotonic() < deadline, f"topic {topic} never appeared"
        time.sleep(0.1)
    n = partition_count(settings, topic)
    c = Consumer(client_settings(bootstrap, **{"group.id": unique("reader"),
                                               "enable.auto.commit": False,
                                               "fetch.wait.max.ms": 10}))
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
    out: list[Any] = []
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in c.consume(10_000, timeout=0.1) if m.error() is None]
            if batch:
                out.extend(batch)
                last = time.monotonic()
            elif len(out) >= expected and time.monotonic() - last >= settle_s:
                break
    finally:
        c.close()
    return out


def simulated(rows: int, symbols: int = 3, seed: int = 7) -> pa.Table:
    """Ticks from tickflow's own simulator (the tests' data; no ../shared needed)."""
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=symbols,
                                          seed=seed), RunContext(job_name="test"))
    return pa.Table.from_batches(list(src.batches(None, 65_536)))


def committed_offset(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offset of partition 0 (0 when none is committed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_settings(bootstrap, **{"group.id": group,
                                                      "enable.auto.commit": False}))
    try:
        got = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return max(0, got[0].offset)
