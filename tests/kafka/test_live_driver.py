"""Live jobs placed on the one driver, on the embedded broker: ``--replay`` produces in the
source's format, every tick's latency is measured once, and with a Kafka sink the consumer
offsets are committed while the job runs, not only at its end. (That they are never ahead of
the outputs is what tests/kafka/test_failures.py's killed consumer shows: nothing is lost.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.kafka.schema_registry_server import SchemaRegistryServer
from tests.kafka.util import committed_offset, read_topic, simulated, unique
from tickflow.connectors.kafka_client import client_settings
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner, replay_then_end
from tickflow.engine.loader import load_job

ROWS = 6_000

JOB = """
name: live-driver
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    group_id: {topic}-g
    format: {fmt}{registry}
    dead_letter_path: {tmp}/dead.jsonl
steps:
  - {{kernel: ema, params: {{span: 10}}}}
signals:
  up: price > ema
sinks:
{sinks}
executor: {{workers: 1}}
"""


def _job(tmp_path: Path, bootstrap: str, topic: str, sinks: str, fmt: str = "json",
         registry: str | None = None):
    path = tmp_path / f"{topic}.yaml"
    path.write_text(JOB.format(bootstrap=bootstrap, topic=topic, fmt=fmt, tmp=tmp_path,
                               registry=f"\n    schema_registry: {registry}" if registry else "",
                               sinks=sinks))
    return compile_job(load_job(path))


@pytest.mark.parametrize("fmt", ["json", "avro", "arrow"])
def test_replay_produces_in_the_source_format(kafka_broker, tmp_path: Path, fmt: str) -> None:
    ticks = simulated(ROWS, symbols=3, seed=3)
    capture = tmp_path / "capture.parquet"
    pq.write_table(ticks, capture)
    out = tmp_path / "out.parquet"
    with SchemaRegistryServer() as registry:
        job = _job(tmp_path, kafka_broker.bootstrap, unique(f"replay-{fmt}"),
                   f"  - {{kind: parquet, path: {out}}}", fmt,
                   registry.url if fmt == "avro" else None)
        runner = LiveRunner(job, max_seconds=120)
        runner.on_open = replay_then_end(runner, str(capture), "max", follow=False)
        summary = runner.run()
        assert not runner.errors, runner.errors
    assert summary.ticks == ROWS and summary.dead_letters == {}
    # Arrow: many ticks a message; JSON and Avro: one each
    assert summary.replayed == summary.messages
    assert (summary.messages < ROWS) if fmt == "arrow" else (summary.messages == ROWS)
    got = pq.read_table(out)
    assert got.num_rows == ROWS
    for s in ticks["symbol"].unique().to_pylist():
        want = ticks.filter(pc.equal(ticks["symbol"], s))["sequence"].to_pylist()
        assert got.filter(pc.equal(got["symbol"], s))["sequence"].to_pylist() == want
    assert summary.latency.count == ROWS  # every tick's latency, measured once


def test_offsets_are_committed_while_running(kafka_broker, tmp_path: Path) -> None:
    """Commits go out a few times a second while ticks keep coming, and at the end every
    offset is committed and every output message is in the topic."""
    ticks = simulated(ROWS, symbols=3, seed=4)
    capture = tmp_path / "capture.parquet"
    pq.write_table(ticks, capture)
    topic, signals = unique("commits"), unique("commits-out")
    job = _job(tmp_path, kafka_broker.bootstrap, topic,
               f'  - {{kind: kafka, bootstrap: "{kafka_broker.bootstrap}", topic: {signals}}}')
    runner = LiveRunner(job, max_seconds=120)
    # about 3 s of ticks: the simulator offers 200 ticks/s (30 s), replayed at 10x
    runner.on_open = replay_then_end(runner, str(capture), "10x", follow=False)
    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            committed = committed_offset(kafka_broker.bootstrap, topic, f"{topic}-g")
            samples.append((committed, runner.summary.ticks))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = runner.run()
    finally:
        done.set()
        watcher.join(30)
    assert not runner.errors and summary.ticks == ROWS
    assert any(committed > 0 and seen < ROWS for committed, seen in samples), \
        f"no offset was committed while the job was running: {samples}"
    assert committed_offset(kafka_broker.bootstrap, topic, f"{topic}-g") == ROWS
    assert len(read_topic(kafka_broker.bootstrap, signals, ROWS)) == ROWS


def test_commits_follow_acknowledgements_without_flushing(kafka_broker, tmp_path: Path,
                                                          monkeypatch) -> None:
    """The sink's producer holds each message 300 ms before sending it (``linger_ms``), and
    ticks keep coming, so its queue is never empty. Every commit the job makes still covers
    only ticks whose output messages are already in the output topic (read back at the moment
    of the commit), commits go out all along the run, and the sink is never flushed on the
    driver's thread before it closes; the running commits are asynchronous and answered."""
    from tickflow.connectors.kafka_commits import OffsetCommits
    from tickflow.connectors.kafka_sink import KafkaSink
    from tickflow.connectors.kafka_source import KafkaSource
    from tickflow.connectors.kafka_topics import read_to_end

    ticks = simulated(ROWS, symbols=3, seed=5)
    capture = tmp_path / "capture.parquet"
    pq.write_table(ticks, capture)
    topic, out = unique("acked"), unique("acked-out")
    bootstrap = kafka_broker.bootstrap
    job = _job(tmp_path, bootstrap, topic,
               f'  - {{kind: kafka, bootstrap: "{bootstrap}", topic: {out}, linger_ms: 300}}')
    runner = LiveRunner(job, max_seconds=120)
    # ~6 s: the ticks arrive over long enough for several commits while running even when
    # the job is starved of CPU (at 10x, ~3 s, a loaded run made only 4 of the 5 asked for)
    runner.on_open = replay_then_end(runner, str(capture), "5x", follow=False)
    commits: list[tuple[int, int, int]] = []  # (committed offset, outputs in the topic, seen)
    flushes: list[bool] = []  # per flush: whether the sink was closing
    closing: list[bool] = []
    sink_flush, sink_close = KafkaSink.flush, KafkaSink.close

    def watched(commit):  # both the running (asynchronous) and the last (synchronous) commits
        def check(self: KafkaSource, offsets: dict[int, int]) -> bool:
            if self.config.topic == topic and offsets:
                ends, _ = read_to_end(client_settings(bootstrap), out, {0: 0})
                commits.append((max(offsets.values()), ends.get(0, 0), runner.summary.ticks))
            return commit(self, offsets)

        return check

    def flush(self: KafkaSink, timeout_s: float | None = None) -> None:
        flushes.append(bool(closing))
        sink_flush(self, timeout_s)

    def close(self: KafkaSink) -> str | None:
        closing.append(True)
        return sink_close(self)

    answers: list[bool] = []  # the broker's answers to the asynchronous commits
    on_commit = OffsetCommits.on_commit

    def answered(self: OffsetCommits, err: object, partitions: list) -> None:
        answers.extend(err is None and tp.error is None for tp in partitions
                       if self.sent.get(tp.partition) == tp.offset)
        on_commit(self, err, partitions)

    monkeypatch.setattr(OffsetCommits, "on_commit", answered)
    monkeypatch.setattr(KafkaSource, "commit", watched(KafkaSource.commit))
    monkeypatch.setattr(KafkaSource, "commit_async", watched(KafkaSource.commit_async))
    monkeypatch.setattr(KafkaSink, "flush", flush)
    monkeypatch.setattr(KafkaSink, "close", close)
    summary = runner.run()
    assert not runner.errors and summary.ticks == ROWS
    # every commit: the outputs of all ticks before the committed offset are in the topic
    # (one output message per tick, in order, on one partition)
    for offset, in_topic, _ in commits:
        assert in_topic >= offset, f"offset {offset} committed with {in_topic} outputs: {commits}"
    while_running = [c for c in commits if c[2] < ROWS]
    assert len(while_running) >= 5, f"commits did not keep up: {commits}"
    assert [c[0] for c in while_running] == sorted({c[0] for c in while_running})
    assert not [f for f in flushes if not f], f"flushed while running: {flushes}"
    assert len(answers) >= 3 and all(answers), f"asynchronous commits answered: {answers}"
    assert committed_offset(bootstrap, topic, f"{topic}-g") == ROWS
    assert len(read_topic(bootstrap, out, ROWS)) == ROWS


def test_the_state_is_at_its_full_windows_before_the_first_tick(kafka_broker, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The driver's warm-up widens the state before the first poll (the first batches would
    otherwise widen it step by step); the run's outputs are every tick's."""
    from tickflow.engine.runtime.pipeline import Pipeline

    widened: list[Pipeline] = []
    widen = Pipeline.widen_windows

    def recorded(pipeline: Pipeline) -> None:
        widen(pipeline)
        widened.append(pipeline)

    monkeypatch.setattr(Pipeline, "widen_windows", recorded)
    ticks = simulated(2_000, symbols=3, seed=8)
    capture = tmp_path / "capture.parquet"
    pq.write_table(ticks, capture)
    out = tmp_path / "out.parquet"
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(bootstrap=kafka_broker.bootstrap, topic=unique("widen"),
                               fmt="json", tmp=tmp_path, registry="",
                               sinks=f"  - {{kind: parquet, path: {out}}}")
                    .replace("{kernel: ema, params: {span: 10}}",
                             "{kernel: sma, params: {window: 50}}")
                    .replace("price > ema", "price > sma"))
    runner = LiveRunner(compile_job(load_job(path)), max_seconds=120)
    replay = replay_then_end(runner, str(capture), "max", follow=False)
    seen_before_open: list[int] = []

    def on_open(source: object) -> None:  # after the warm-up, before the first poll
        seen_before_open.append(len(widened))
        replay(source)

    runner.on_open = on_open
    summary = runner.run()
    assert not runner.errors, runner.errors
    assert seen_before_open == [1]
    states = [st for lane in widened[0].lanes for st in lane.states if st.per_row]
    assert states and all(st.width == 50 and len(st.tiers) == 1 for st in states)
    assert summary.ticks == 2_000 and pq.read_table(out).num_rows == 2_000
