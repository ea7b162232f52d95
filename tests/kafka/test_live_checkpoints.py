"""Checkpointed live jobs with a Kafka sink, on the embedded broker: a checkpoint neither
flushes the sink nor writes the state on the driver's thread, yet a checkpoint's state and
offsets are committed only once its outputs are acknowledged, and its sink position names
exactly its own outputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow.parquet as pq

from tests.kafka.util import committed_offset, read_topic, simulated, unique
from tickflow.connectors.kafka_client import client_settings
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner, replay_then_end
from tickflow.engine.loader import load_job

ROWS = 6_000

JOB = """
name: live-checkpoints
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    group_id: {topic}-g
    batch_size: 200
    linger_ms: 5
    dead_letter_path: {tmp}/dead.jsonl
steps:
  - {{kernel: ema, params: {{span: 10}}}}
signals:
  up: price > ema
sinks:
  - {{kind: kafka, bootstrap: "{bootstrap}", topic: {out}, linger_ms: 300}}
state:
  backend: rocksdb
  path: {tmp}/state
  checkpoint: {{every: 100ms}}
executor: {{workers: 1}}
"""


def test_checkpoints_wait_for_acknowledgements_not_on_the_driver(kafka_broker, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The sink's producer holds each message 300 ms (``linger_ms``) while ticks keep coming.
    Checkpoints are still written all along the run, on a thread of their own, and the sink
    is never flushed on the driver's thread before it closes. When each checkpoint's manifest
    is written, every output of the ticks it covers is in the output topic, and its sink
    position is exactly those outputs (one message per tick, one partition: the source's
    offset), not the later ones already acknowledged; every committed consumer offset is
    covered by a written manifest."""
    from tickflow.connectors.kafka_sink import KafkaSink
    from tickflow.connectors.kafka_source import KafkaSource
    from tickflow.connectors.kafka_topics import read_to_end
    from tickflow.engine.checkpoint import CheckpointStore

    ticks = simulated(ROWS, symbols=3, seed=6)
    capture = tmp_path / "capture.parquet"
    pq.write_table(ticks, capture)
    topic, out = unique("ckpt"), unique("ckpt-out")
    bootstrap = kafka_broker.bootstrap
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(bootstrap=bootstrap, topic=topic, out=out, tmp=tmp_path))
    runner = LiveRunner(compile_job(load_job(path)), max_seconds=120)
    runner.on_open = replay_then_end(runner, str(capture), "10x", follow=False)  # ~3 s
    # (source offset, sink offset, outputs in the topic, written on the driver's thread)
    manifests: list[tuple[int, int, int, bool]] = []
    commits: list[tuple[int, int]] = []  # (committed offset, newest manifest's source offset)
    flushes: list[bool] = []  # per flush on the driver's thread: whether ticks were flowing
    driver_thread = threading.current_thread()
    store_commit, sink_flush = CheckpointStore.commit, KafkaSink.flush

    def commit_store(self, backend, snapshot, manifest, extra=None):  # type: ignore[no-untyped-def]
        source = manifest.sources[0]["offsets"]["0"]
        sink = manifest.sinks[0]["offsets"].get("0", 0)
        ends, _ = read_to_end(client_settings(bootstrap), out, {0: 0})
        manifests.append((source, sink, ends.get(0, 0),
                          threading.current_thread() is driver_thread))
        return store_commit(self, backend, snapshot, manifest, extra)

    def flush(self: KafkaSink, timeout_s: float | None = None) -> None:
        if threading.current_thread() is driver_thread:
            # the checkpoint before the first tick (nothing written) and the last one, once
            # the run stopped, wait: a checkpoint while ticks flow must not
            flushes.append(runner.summary.ticks > 0 and not runner.stop.is_set())
        sink_flush(self, timeout_s)

    def watched(commit):  # type: ignore[no-untyped-def]
        def check(self: KafkaSource, offsets: dict[int, int]) -> bool:
            if self.config.topic == topic and offsets:
                newest = manifests[-1][0] if manifests else -1
                commits.append((max(offsets.values()), newest))
            return commit(self, offsets)

        return check

    monkeypatch.setattr(CheckpointStore, "commit", commit_store)
    monkeypatch.setattr(KafkaSink, "flush", flush)
    monkeypatch.setattr(KafkaSource, "commit", watched(KafkaSource.commit))
    monkeypatch.setattr(KafkaSource, "commit_async", watched(KafkaSource.commit_async))
    summary = runner.run()
    assert not runner.errors and summary.ticks == ROWS
    while_running = [m for m in manifests if 0 < m[0] < ROWS]
    assert len(while_running) >= 3, f"no checkpoints while running: {manifests}"
    assert not any(m[3] for m in while_running), f"written on the driver's thread: {manifests}"
    for source, sink, in_topic, _ in manifests:
        assert in_topic >= source, f"checkpoint at {source} written with {in_topic} outputs"
        assert sink == source, f"checkpoint at {source} names sink offset {sink}: {manifests}"
    assert flushes and not any(flushes), f"flushed on the driver while running: {flushes}"
    assert [m[0] for m in manifests] == sorted(m[0] for m in manifests)
    for offset, newest in commits:
        assert offset <= newest, f"offset {offset} committed past the checkpoint at {newest}"
    assert any(0 < offset < ROWS for offset, _ in commits), f"no commit while running: {commits}"
    assert committed_offset(bootstrap, topic, f"{topic}-g") == ROWS
    assert len(read_topic(bootstrap, out, ROWS)) == ROWS
    latest = max((tmp_path / "state").rglob("MANIFEST.json"), key=lambda p: p.parent.name)
    assert json.loads(latest.read_text())["sinks"][0]["offsets"]["0"] == ROWS


def test_an_idle_job_commits_the_batches_that_came_while_a_checkpoint_was_pending(
        kafka_broker, tmp_path: Path) -> None:
    """A checkpoint after every batch, but the sink holds its messages 300 ms: batches come
    while a checkpoint waits for its acknowledgements, and no other begins meanwhile. Once the
    topic is drained and the job waits for more, the checkpoint that came due meanwhile is
    taken anyway: every tick's offset is committed while the job still runs, not only when
    it stops (or when the next tick comes)."""
    import time

    from tests.kafka.util import produce_ticks

    ticks = simulated(ROWS, symbols=3, seed=7)
    topic, out = unique("idle"), unique("idle-out")
    bootstrap = kafka_broker.bootstrap
    produce_ticks(bootstrap, topic, ticks)
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(bootstrap=bootstrap, topic=topic, out=out, tmp=tmp_path)
                    .replace("checkpoint: {every: 100ms}", "checkpoint: {every: 1}"))
    stop = threading.Event()
    runner = LiveRunner(compile_job(load_job(path)), stop=stop, max_seconds=120)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while runner.summary.ticks < ROWS:
            assert time.monotonic() < deadline and not errors, errors or runner.summary.ticks
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        committed = committed_offset(bootstrap, topic, f"{topic}-g")
        while committed < ROWS and time.monotonic() < deadline:
            time.sleep(0.2)
            committed = committed_offset(bootstrap, topic, f"{topic}-g")
        assert thread.is_alive() and not errors, errors
        assert committed == ROWS, f"idle with {ROWS - committed} ticks not committed"
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
