"""A checkpointed live job of two Kafka sources (each polled on a thread of its own), on the
embedded broker: its checkpoints are deferred like a one-source job's. The state is taken
between batches and written on a thread of its own once the Kafka sink has acknowledged its
outputs; the sink is never flushed on the driver's thread while ticks flow; and each source's
offsets are committed only once a checkpoint covering them is written."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa

from tests.kafka.util import committed_offset, produce_ticks, read_topic, simulated, unique
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner
from tickflow.engine.loader import load_job

ROWS = 3_000  # per source

JOB = """
name: live-checkpoints-many
mode: live
sources:
  - id: a
    kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic_a}
    group_id: {group}
    batch_size: 100
    linger_ms: 5
    end_when_idle_s: 2
  - id: b
    kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic_b}
    group_id: {group}
    batch_size: 100
    linger_ms: 5
    end_when_idle_s: 2
steps:
  - id: joined
    operator: asof_join
    params: {{left: a, right: b, direction: backward, suffixes: ["", "_b"]}}
  - {{kernel: ema, params: {{span: 10}}}}
sinks:
  - {{kind: kafka, bootstrap: "{bootstrap}", topic: {out}, linger_ms: 300,
     columns: [timestamp, symbol, price, price_b, ema]}}
state:
  backend: rocksdb
  path: {tmp}/state
  checkpoint: {{every: 100ms}}
executor: {{workers: 1}}
"""


def _paced(bootstrap: str, topics: list[str], ticks: pa.Table, chunks: int = 30) -> None:
    """Both topics get the same ticks, a chunk at a time (about 3 s in all)."""
    step = ticks.num_rows // chunks
    for i in range(chunks):
        part = ticks.slice(i * step, step if i < chunks - 1 else ticks.num_rows - i * step)
        for topic in topics:
            produce_ticks(bootstrap, topic, part)
        time.sleep(0.1)


def test_a_job_of_two_sources_defers_its_checkpoints_and_commits_after_them(
        kafka_broker, tmp_path: Path, monkeypatch) -> None:
    from tickflow.connectors.kafka_sink import KafkaSink
    from tickflow.connectors.kafka_source import KafkaSource
    from tickflow.engine.checkpoint import CheckpointStore

    ticks = simulated(ROWS, symbols=3, seed=8)
    topic_a, topic_b, out, group = (unique("many-a"), unique("many-b"), unique("many-out"),
                                    unique("many-g"))
    bootstrap = kafka_broker.bootstrap
    for topic in (topic_a, topic_b):  # the sources need their topics when they open
        produce_ticks(bootstrap, topic, ticks.slice(0, 0))
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(bootstrap=bootstrap, topic_a=topic_a, topic_b=topic_b, out=out,
                               group=group, tmp=tmp_path))
    runner = LiveRunner(compile_job(load_job(path)), max_seconds=120)
    feeder = threading.Thread(target=_paced, args=(bootstrap, [topic_a, topic_b], ticks),
                              daemon=True)
    runner.on_open = lambda source: feeder.start()
    # per manifest: (each topic's source offset, written on the driver's thread)
    manifests: list[tuple[dict[str, int], bool]] = []
    commits: list[tuple[str, int, int]] = []  # (topic, offset, newest manifest's offset)
    flushes: list[bool] = []  # per flush on the driver's thread: whether ticks were coming
    driver_thread = threading.current_thread()
    store_commit, sink_flush = CheckpointStore.commit, KafkaSink.flush

    def commit_store(self, backend, snapshot, manifest, extra=None):  # type: ignore[no-untyped-def]
        offsets = {s["topic"]: s["offsets"].get("0", 0) for s in manifest.sources if s}
        manifests.append((offsets, threading.current_thread() is driver_thread))
        return store_commit(self, backend, snapshot, manifest, extra)

    def flush(self: KafkaSink, timeout_s: float | None = None) -> None:
        if threading.current_thread() is driver_thread:
            flushes.append(feeder.is_alive())
        sink_flush(self, timeout_s)

    def watched(commit):  # type: ignore[no-untyped-def]
        def check(self: KafkaSource, offsets: dict[int, int]) -> bool:
            if offsets:
                topic = self.config.topic
                newest = manifests[-1][0].get(topic, -1) if manifests else -1
                commits.append((topic, max(offsets.values()), newest))
            return commit(self, offsets)

        return check

    monkeypatch.setattr(CheckpointStore, "commit", commit_store)
    monkeypatch.setattr(KafkaSink, "flush", flush)
    monkeypatch.setattr(KafkaSource, "commit", watched(KafkaSource.commit))
    monkeypatch.setattr(KafkaSource, "commit_async", watched(KafkaSource.commit_async))
    runner.run()
    feeder.join(30)
    assert not runner.errors
    assert runner.summary.ticks == 2 * ROWS
    while_running = [m for m in manifests if 0 < sum(m[0].values()) < 2 * ROWS]
    assert len(while_running) >= 3, f"no checkpoints while running: {manifests}"
    assert not any(on_driver for _, on_driver in while_running), \
        f"written on the driver's thread: {manifests}"
    # the driver's thread flushes the sink for the checkpoint before the first tick and the
    # last one, never while ticks come (a synchronous checkpoint flushes every time)
    assert flushes and not any(flushes), f"flushed on the driver while running: {flushes}"
    for topic, offset, newest in commits:
        assert offset <= newest, f"{topic}: offset {offset} committed past the checkpoint " \
                                 f"at {newest}"
    assert any(0 < offset < ROWS for _, offset, _ in commits), f"none while running: {commits}"
    assert committed_offset(bootstrap, topic_a, group) == ROWS
    assert committed_offset(bootstrap, topic_b, group) == ROWS
    assert len(read_topic(bootstrap, out, ROWS)) == ROWS  # one output per tick of `a`
