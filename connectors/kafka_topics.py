"""Reading Kafka partitions to their exact end, and the message header tickflow adds.

Shared by the source (resolving "the end" to a real offset, checking a resume point) and the
sink (finding its partitions' ends and, after a resume, the tail the killed run wrote).
"""

from __future__ import annotations

import time
from typing import Any

from tickflow.connectors.kafka_client import client_settings, partition_count
from tickflow.engine.errors import SinkError

SENT_HEADER = "tickflow-sent-us"
"""Optional message header: when the producer sent the tick (µs since the epoch), for
tick-to-signal latency; without it the message timestamp (ms) is used."""


def read_to_end(settings: dict[str, Any], topic: str, starts: dict[int, int],
                timeout_s: float = 60.0, offsets: list[int] | None = None,
                ) -> tuple[dict[int, int], list[tuple[int, tuple[bytes, bytes]]]]:
    """Read partitions from ``starts`` (-1: from the broker's reported end) to their end.

    Returns the end offset per partition (from the end-of-partition event of the fetch,
    which is exact) and the ``(partition, (key, value))`` of every message read; ``offsets``,
    when given, gets each of those messages' offset, in the same order.
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
                    if offsets is not None:
                        offsets.append(int(m.offset()))
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
