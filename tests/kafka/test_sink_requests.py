"""A Kafka sink without linger (a live job's) sends each write's messages in one produce
request, on the embedded broker. With librdkafka's ``linger.ms`` 0 its sender took a write's
messages as they were queued, a request for one or a few each; the idempotent producer allows
5 requests in flight, so a write of many signals waited for answers while the sender thread
spun (docs/performance.md, live latency)."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pyarrow as pa

from tests.kafka.util import read_topic, unique
from tickflow.connectors.base import RunContext
from tickflow.connectors.kafka_sink import KafkaSink, KafkaSinkConfig

WRITES, ROWS = 30, 20


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_write_without_linger_goes_out_in_one_request(kafka_broker) -> None:
    batch = pa.RecordBatch.from_pydict({"symbol": [f"S{i % 3}" for i in range(ROWS)],
                                        "price": np.arange(ROWS, dtype=float)})
    topic = unique("one-request")
    log = logging.getLogger("tickflow.kafka")  # where librdkafka's lines go
    handler, level = _Lines(), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    sink = KafkaSink(KafkaSinkConfig(topic=topic, bootstrap=kafka_broker.bootstrap, linger_ms=0,
                                     producer={"debug": "msg"}), RunContext(job_name="t"))
    try:
        sink.open(batch.schema)
        sink.write(batch)  # connected, producer id assigned
        sink.flush()
        handler.lines.clear()
        for _ in range(WRITES):
            sink.write(batch)
            time.sleep(0.003)  # a live batch's interval: each write on its own
        sink.flush()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        sink.close()
    sizes = [int(m.group(1)) for line in handler.lines
             if (m := re.search(r"Produce MessageSet with (\d+) message", line))]
    assert sum(sizes) == WRITES * ROWS, sizes
    # one request a write (a write preempted for longer than the 50 µs may split: a margin)
    assert len(sizes) <= WRITES * 1.1, f"{len(sizes)} requests for {WRITES} writes: {sizes}"
    assert len(read_topic(kafka_broker.bootstrap, topic, (WRITES + 1) * ROWS)) == \
        (WRITES + 1) * ROWS
