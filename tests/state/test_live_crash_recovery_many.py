"""Crash recovery of a LIVE job of two Kafka sources (each polled on a thread of its own, its
checkpoints deferred: taken between batches, written on their own thread once the Kafka sink
has acknowledged their outputs): SIGKILLed after checkpoints while running and restarted, its
Parquet output and its Kafka messages equal an uninterrupted run's (memory state): no tick
lost, no row or message twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.kafka.util import unique
from tests.state.test_crash_recovery import assert_tables_equal
from tests.state.test_live_crash_recovery import _paced, _rows_checkpointed, _signals
from tickflow.connectors.replay import replay_to_kafka
from tickflow.connectors.simulator import write_simulated_parquet

JOB = """\
name: livecrash
mode: live
sources:
  - id: a
    kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${TOPIC_A}
    group_id: ${GROUP}
    batch_size: 2000
    linger_ms: 5
    end_when_idle_s: 1.5
  - id: b
    kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${TOPIC_B}
    group_id: ${GROUP}
    batch_size: 2000
    linger_ms: 5
    end_when_idle_s: 1.5
steps:
  - id: joined
    operator: asof_join
    params: {left: a, right: b, direction: backward, suffixes: ["", "_b"]}
  - {kernel: rolling_zscore, params: {window: 50}}
signals:
  up: zscore > 2.0
sinks:
  - kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${SIGNALS_TOPIC}
    columns: [timestamp, symbol, price, price_b, zscore, up]
    only_rows_with: [up]
  - kind: parquet
    path: out/features.parquet
state:
  backend: ${BACKEND}
  checkpoint: {every: 200ms}
executor: {kind: local, workers: 1}
"""

ROWS = 60_000  # per source


@pytest.fixture(scope="module")
def tick_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("live_crash_many")
    files = (d / "a.parquet", d / "b.parquet")
    for seed, path in enumerate(files, start=31):
        write_simulated_parquet(path, rows=ROWS, symbols=5, seed=seed)
    return files


@pytest.fixture(scope="module")
def topics(kafka_broker, tick_files: tuple[Path, Path]) -> tuple[str, str]:
    """Pre-filled topics, for the uninterrupted run."""
    names = (unique("crash-many-a"), unique("crash-many-b"))
    for path, topic in zip(tick_files, names, strict=True):
        assert replay_to_kafka(path, kafka_broker.bootstrap, topic, "max") == ROWS
    return names


def _env(broker, topics: tuple[str, str], signals: str, backend: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP": broker.bootstrap,
            "TOPIC_A": topics[0], "TOPIC_B": topics[1], "SIGNALS_TOPIC": signals,
            "BACKEND": backend, "GROUP": unique("g")}


def _start(cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                             "--quiet"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(cwd: Path, env: dict[str, str]) -> str:
    proc = _start(cwd, env)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def _run(broker, topics: tuple[str, str], cwd: Path, backend: str, kills: list[int],
         feeders: tuple[threading.Thread, ...] = ()) -> tuple[pa.Table,
                                                            list[tuple[bytes, bytes]]]:
    (cwd / "job.yaml").write_text(JOB)
    signals = unique(f"crash-many-signals-{backend}")
    env = _env(broker, topics, signals, backend)
    rng = random.Random(11)
    for rows in kills:  # SIGKILL a moment after a checkpoint of at least `rows` rows
        proc = _start(cwd, env)
        deadline = time.monotonic() + 120
        while _rows_checkpointed(cwd) < rows:
            assert proc.poll() is None, f"ended before it was killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    if kills:
        assert _rows_checkpointed(cwd) < 2 * ROWS  # every kill came before the end
        for feeder in feeders:
            feeder.join(60)
        # the killed runs wrote messages that the resume must not write again
        assert _signals(broker.bootstrap, signals), "no message out before the last kill"
    err = _finish(cwd, env)
    assert "Traceback" not in err
    return pq.read_table(cwd / "out" / "features.parquet"), _signals(broker.bootstrap, signals)


@pytest.mark.slow
def test_a_sigkilled_live_job_of_two_sources_resumes_to_the_uninterrupted_output(
        kafka_broker, topics: tuple[str, str], tick_files: tuple[Path, Path],
        tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    table, messages = _run(kafka_broker, topics, tmp_path / "ref", "memory", [])
    assert table.num_rows == ROWS and len(messages) > 20
    # the same ticks arriving as the killed job runs: however fast it is, the kills land
    # while it still reads (a pre-filled topic could be drained between two checkpoints)
    fed = (unique("crash-many-fed-a"), unique("crash-many-fed-b"))
    feeders = tuple(_paced(kafka_broker.bootstrap, topic, pq.read_table(path), seconds=10)
                    for path, topic in zip(tick_files, fed, strict=True))
    killed_table, killed_messages = _run(kafka_broker, fed, tmp_path / "killed", "rocksdb",
                                         [ROWS // 4, ROWS], feeders)
    assert_tables_equal(table, killed_table)
    assert Counter(killed_messages) == Counter(messages)  # none lost, none twice
    assert killed_messages == messages  # in the same order (one partition)
