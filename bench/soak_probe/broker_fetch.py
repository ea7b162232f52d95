"""Does the embedded broker's fetch cost grow with a partition's stored batches or bytes?

For each ``NxM`` argument it fills a fresh topic's partition with N record batches of M
messages (257-byte ticks' size), then times 30 single messages from produce to a consumer
positioned at the end (p50, p90). bench/soak.py chose the replay's batching from it:

    python bench/soak_probe/broker_fetch.py 10x10 2000x10 2000x1000 200x10000 200x50000
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from tickflow.connectors.embedded_broker import EmbeddedBroker
from tickflow.connectors.kafka_client import client_settings, ensure_topic

VALUE = b"x" * 257


def fetch_ms(bootstrap: str, topic: str, batches: int, per_batch: int) -> tuple[float, float]:
    fill = client_settings(bootstrap, **{"linger.ms": 10_000, "batch.num.messages": per_batch,
                                         "batch.size": 64 << 20, "message.max.bytes": 100 << 20,
                                         "queue.buffering.max.messages": 2_000_000})
    ensure_topic(fill, topic, 1)
    producer = Producer(fill)
    for _ in range(batches):
        for _ in range(per_batch):
            producer.produce(topic, VALUE, partition=0)
        producer.flush()  # one record batch
    consumer = Consumer(client_settings(bootstrap, **{
        "group.id": f"probe-{topic}", "enable.auto.commit": False, "fetch.wait.max.ms": 2,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20}))
    end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
    consumer.assign([TopicPartition(topic, 0, end)])
    consumer.poll(0.5)
    one = Producer(client_settings(bootstrap, **{"linger.ms": 0}))
    took = []
    for k in range(30):
        mark = b"MARK%d" % k
        t = time.monotonic()
        one.produce(topic, mark, partition=0)
        one.flush()
        while True:  # Tansu's end offset is its last batch's first: skip the rest of it
            m = consumer.poll(5)
            if m is not None and not m.error() and m.value() == mark:
                break
        took.append((time.monotonic() - t) * 1e3)
    consumer.close()
    return float(np.percentile(took, 50)), float(np.percentile(took, 90))


def main() -> None:
    with EmbeddedBroker() as broker:
        for i, arg in enumerate(sys.argv[1:]):
            n, m = (int(x) for x in arg.split("x"))
            p50, p90 = fetch_ms(broker.bootstrap, f"probe-{i}", n, m)
            print(f"{n:,} batches x {m:,} messages: one message produce -> consume p50 "
                  f"{p50:.1f} ms, p90 {p90:.1f} ms (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
