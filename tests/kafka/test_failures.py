"""Failures on the live path, on real brokers: a broker that dies mid-run and comes back
empty, a consumer stopped or killed mid-run and restarted. Nothing received is lost, and no
tick is processed twice into the features."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.kafka.util import committed_offset, produce_ticks, read_topic, simulated, unique
from tickflow.connectors.embedded_broker import EmbeddedBroker
from tickflow.connectors.replay import replay_to_kafka
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner
from tickflow.engine.executors.local import Pipeline
from tickflow.engine.live_view import LiveView
from tickflow.engine.loader import load_job

ROOT = Path(__file__).resolve().parents[2]


def write_job(tmp_path: Path, bootstrap: str, topic: str, sink: str, **source) -> Path:
    extra = "".join(f"\n    {k}: {v}" for k, v in source.items())
    path = tmp_path / f"job-{unique('j')}.yaml"
    path.write_text(f"""
name: failure-test
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    dead_letter_path: {tmp_path / 'dead.jsonl'}{extra}
include: [{ROOT / 'jobs/features/core.yaml'}]
signals:
  buy: zscore < -2.0 and rsi < 30
sinks:
{sink}
executor: {{workers: 1}}
""")
    return path


def wait_for(condition, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_runner(job_path: Path, **kwargs) -> tuple[LiveRunner, threading.Thread, list]:
    runner = LiveRunner(compile_job(load_job(job_path)), **kwargs)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return runner, thread, errors


def test_broker_killed_mid_run_is_waited_for_and_nothing_is_lost(tmp_path: Path) -> None:
    """Tansu keeps everything in memory, so the broker that comes back is empty: what the
    job had consumed before is safe in its state and outputs, it waits instead of failing,
    and it reads the new topic from its beginning instead of from its old position (which
    would skip the first ticks produced after the restart)."""
    ticks = simulated(6_000, symbols=3, seed=21)
    before, after = ticks.slice(0, 3_000), ticks.slice(3_000)
    topic, out = unique("ticks"), tmp_path / "features.parquet"
    broker = EmbeddedBroker().start()
    try:
        produce_ticks(broker.bootstrap, topic, before)
        job = write_job(tmp_path, broker.bootstrap, topic, f"  - {{kind: parquet, path: {out}}}",
                        batch_size=500)
        log = io.StringIO()
        stop = threading.Event()
        runner, thread, errors = start_runner(
            job, stop=stop, view=LiveView(["buy"], out=log, rich_view=False))
        wait_for(lambda: runner.summary.ticks >= 3_000, what="the first ticks")
        broker.kill()
        wait_for(lambda: "went away" in log.getvalue(), what="the outage to be noticed")
        time.sleep(1.0)
        assert thread.is_alive() and not errors  # waiting, not failed
        broker.restart()
        # the collector side re-creates the topic and keeps producing
        produce_ticks(broker.bootstrap, topic, after)
        wait_for(lambda: runner.summary.ticks >= 6_000,
                 what="the ticks after the restart; the job said: " + "; ".join(
                     line for line in log.getvalue().splitlines() if "kafka source" in line))
        stop.set()
        thread.join(60)
        assert not errors, errors
    finally:
        broker.stop()
    text = log.getvalue()
    assert "is back after" in text and "reading the topic from its beginning" in text
    order = [("symbol", "ascending"), ("sequence", "ascending")]
    got = pq.read_table(out)
    assert got.num_rows == 6_000
    # the restarted broker's topic may have other partitions: each symbol's order is kept
    got = got.sort_by(order)
    assert got["sequence"].to_pylist() == ticks.sort_by(order)["sequence"].to_pylist()
    # the state lived through the outage: features as if there had been none
    job_compiled = compile_job(load_job(job))
    want = pa.Table.from_batches([Pipeline(job_compiled).process(
        ticks.combine_chunks().to_batches()[0])]).sort_by(order)
    for name in ("zscore", "rsi", "ema", "cusum_stat", "var", "buy"):
        np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy(),
                                      err_msg=name)


def kafka_sink(bootstrap: str, topic: str) -> str:
    return (f"  - {{kind: kafka, bootstrap: \"{bootstrap}\", topic: {topic}, "
            f"columns: [symbol, sequence, zscore]}}")


def output_ids(bootstrap: str, topic: str, expected: int) -> list[tuple[str, int]]:
    return [(v["symbol"], v["sequence"]) for v in
            (json.loads(m.value()) for m in read_topic(bootstrap, topic, expected))]


def test_stopped_consumer_resumes_exactly_where_its_outputs_end(kafka_broker,
                                                                tmp_path: Path) -> None:
    """The first run is stopped with ticks still waiting in the topic; the rest is produced
    only after it has stopped, so however fast the first run drains, some ticks are left for
    the second run to start from."""
    ticks = simulated(8_000, symbols=3, seed=22)
    topic, out_topic, group = unique("ticks"), unique("out"), unique("group")
    bootstrap = kafka_broker.bootstrap
    produce_ticks(bootstrap, topic, ticks.slice(0, 3_500))
    job = write_job(tmp_path, bootstrap, topic, kafka_sink(bootstrap, out_topic),
                    group_id=group, batch_size=700, end_when_idle_s=2)
    stop = threading.Event()
    runner, thread, errors = start_runner(job, stop=stop)
    wait_for(lambda: runner.summary.ticks >= 2_000, what="the first batches")
    stop.set()  # SIGTERM / Ctrl+C in run-job: finish the batch in hand, write, commit
    thread.join(60)
    assert not errors, errors
    first = runner.summary.ticks
    assert 2_000 <= first <= 3_500
    produce_ticks(bootstrap, topic, ticks.slice(3_500))
    runner, thread, errors = start_runner(job)
    thread.join(120)
    assert not errors, errors
    assert runner.summary.ticks == 8_000 - first
    ids = output_ids(bootstrap, out_topic, 8_000)
    assert len(ids) == 8_000 and len(set(ids)) == 8_000


def written(bootstrap: str, topic: str) -> int:
    """Messages in ``topic`` (its high watermarks): a cheap probe, no reading."""
    from confluent_kafka import Consumer, TopicPartition

    from tickflow.connectors.kafka_client import client_settings, partition_count

    settings = client_settings(bootstrap)
    consumer = Consumer({**settings, "group.id": unique("probe")})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(partition_count(settings, topic)))
    finally:
        consumer.close()


def test_killed_consumer_loses_nothing(kafka_broker, tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up. Offsets are committed only after the outputs of a
    batch are acknowledged, so nothing is lost; the batches whose outputs were written after
    the last commit (at most ``commit_interval_s`` of them) are processed again: at-least-once
    for Kafka sinks, and exactly the uncommitted tail comes twice."""
    ticks = simulated(10_000, symbols=3, seed=23)
    rest = tmp_path / "rest.parquet"
    pq.write_table(ticks.slice(2_000), rest)
    topic, out_topic, group = unique("ticks"), unique("out"), unique("group")
    bootstrap = kafka_broker.bootstrap
    produce_ticks(bootstrap, topic, ticks.slice(0, 2_000))
    job = write_job(tmp_path, bootstrap, topic, kafka_sink(bootstrap, out_topic),
                    group_id=group, batch_size=200, end_when_idle_s=2)
    killed_job = write_job(tmp_path, bootstrap, topic, kafka_sink(bootstrap, out_topic),
                           group_id=group, batch_size=200, end_when_idle_s=120)
    log = tmp_path / "job.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", str(killed_job),
                                 "-q"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=out, stderr=subprocess.STDOUT)
    replay = threading.Thread(target=replay_to_kafka, args=(rest, bootstrap, topic, "10x"))
    try:
        wait_for(lambda: proc.poll() is not None or
                 len(read_topic(bootstrap, out_topic, 2_000, timeout_s=2)) >= 2_000,
                 timeout_s=120, what="the job's first outputs")
        # kill it while ticks stream in (8,000 ticks over about 4 s): once the first streamed
        # ticks have outputs, not after a fixed second (a slow start had none by then)
        replay.start()
        wait_for(lambda: proc.poll() is not None or written(bootstrap, out_topic) > 2_000,
                 what="outputs of the streamed ticks")
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before_kill = output_ids(bootstrap, out_topic, 1)
    committed = committed_offset(bootstrap, topic, group)
    every = list(zip(ticks["symbol"].to_pylist(), ticks["sequence"].to_pylist(), strict=True))
    assert 2_000 < len(before_kill) < 10_000  # killed mid-stream
    # nothing was committed whose output was not written ...
    assert set(every[:committed]) <= set(before_kill)
    assert len(before_kill) >= committed
    _, thread, errors = start_runner(job)
    replay.join(120)
    thread.join(120)
    assert not errors, errors
    ids = output_ids(bootstrap, out_topic, 10_000)
    assert set(ids) == set(every)  # ... nothing is lost ...
    # ... and only the written-but-uncommitted tail (offsets >= the commit) comes twice
    twice = [t for t in set(ids) if ids.count(t) > 1] if len(ids) > len(set(ids)) else []
    assert set(twice) <= set(every[committed:])
    assert len(ids) == 10_000 + len(before_kill) - committed

