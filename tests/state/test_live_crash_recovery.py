"""Crash recovery of a LIVE job, for real: the embedded broker runs in the test (it keeps its
topics in memory, so it must outlive the job), a few hundred thousand ticks go into its topic,
and the live job (a subprocess, rocksdb or tiledb state, checkpoints every 0.2 s, ending when
the topic has been idle) is SIGKILLed at random points several times and restarted. Its
Parquet features and its Kafka signals must equal those of an uninterrupted run (memory
state, no checkpoints): no tick lost, no row or signal message duplicated.
"""

from __future__ import annotations

import contextlib
import json
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
from tests.kafka.util import produce_ticks, unique
from tests.state.test_crash_recovery import assert_tables_equal
from tickflow.connectors.replay import replay_to_kafka
from tickflow.connectors.simulator import write_simulated_parquet

JOB = """\
name: livecrash
mode: live
sources:
  - id: ticks
    kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${TICKS_TOPIC}
    group_id: ${GROUP}
    batch_size: 1000  # small batches: the job must still be reading when the kills land
    linger_ms: 5
    end_when_idle_s: 1.5
    dead_letter_path: out/dead_letters.jsonl
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: log_returns}
  - {kernel: rolling_zscore, params: {window: 50}}
  - {kernel: rolling_std, params: {window: 30s}}
  - {kernel: rsi, params: {period: 14}}
signals:
  up: zscore > 2.5
  down: zscore < -2.5 and rsi < 30
sinks:
  - kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${SIGNALS_TOPIC}
    key: symbol
    columns: [timestamp, symbol, price, zscore, rsi, up, down]
    only_rows_with: [up, down]
  - kind: parquet
    path: out/features.parquet
    row_group_rows: 8192
state:
  backend: ${BACKEND}
  checkpoint: {every: 200ms}
executor: {kind: local, workers: 1}
"""

ROWS = 200_000


@pytest.fixture(scope="module")
def ticks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live_crash_ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=14, seed=21)
    return path


@pytest.fixture(scope="module")
def ticks_topic(kafka_broker, ticks_file: Path) -> str:
    topic = unique("crash-ticks")
    assert replay_to_kafka(ticks_file, kafka_broker.bootstrap, topic, "max") == ROWS
    return topic


def _paced(bootstrap: str, topic: str, ticks: pa.Table, seconds: float) -> threading.Thread:
    """Produce ``ticks`` to ``topic`` in 100 chunks over about ``seconds``, on a thread: the
    job cannot run ahead of the ticks, so kills land while it still reads, however fast it
    is (with a pre-filled topic a restarted job drained the rest between two checkpoints)."""
    produce_ticks(bootstrap, topic, ticks.slice(0, 0))  # the topic exists before the job opens
    step = -(-ticks.num_rows // 100)

    def run() -> None:
        for start in range(0, ticks.num_rows, step):
            produce_ticks(bootstrap, topic, ticks.slice(start, step))
            time.sleep(seconds / 100)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _env(broker, topic: str, signals: str, backend: str, group: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP": broker.bootstrap,
            "TICKS_TOPIC": topic, "SIGNALS_TOPIC": signals, "BACKEND": backend,
            "GROUP": group}


def _start(cwd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                             "--quiet", *extra], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(cwd: Path, env: dict[str, str], *extra: str) -> str:
    proc = _start(cwd, env, *extra)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def _rows_checkpointed(cwd: Path) -> int:
    """Rows covered by the newest checkpoint; -1 before the first one."""
    d = cwd / ".tickflow" / "state" / "livecrash" / "checkpoints"
    rows = -1
    if d.is_dir():
        for p in d.iterdir():
            with contextlib.suppress(OSError, ValueError):  # pruned or renamed meanwhile
                rows = max(rows, json.loads((p / "MANIFEST.json").read_text())["rows"])
    return rows


def _kill_after(cwd: Path, env: dict[str, str], rows: int, rng: random.Random) -> None:
    """Start the job and SIGKILL it a random moment after it checkpointed ``rows`` rows
    (0: after the checkpoint a run from empty state takes before it reads)."""
    proc = _start(cwd, env)
    deadline = time.monotonic() + 120
    while _rows_checkpointed(cwd) < rows:
        assert proc.poll() is None, f"the job ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.15))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _signals(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every message of the (single-partition) signals topic, in order."""
    from tickflow.connectors.kafka_client import client_settings
    from tickflow.connectors.kafka_topics import read_to_end

    _, rows = read_to_end(client_settings(bootstrap), topic, {0: 0})
    return [row for _, row in rows]


@pytest.fixture(scope="module")
def reference(kafka_broker, ticks_topic: str, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[pa.Table, list[tuple[bytes, bytes]]]:
    """The uninterrupted run: memory state (no checkpoints at all)."""
    cwd = tmp_path_factory.mktemp("live_crash_ref")
    (cwd / "job.yaml").write_text(JOB)
    signals = unique("crash-signals-ref")
    _finish(cwd, _env(kafka_broker, ticks_topic, signals, "memory", unique("g")))
    table = pq.read_table(cwd / "out" / "features.parquet")
    assert table.num_rows == ROWS
    messages = _signals(kafka_broker.bootstrap, signals)
    assert len(messages) > 100
    return table, messages


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "kills"), [("rocksdb", 3), ("tiledb", 1)])
def test_sigkilled_live_job_resumes_to_the_uninterrupted_output(
        kafka_broker, ticks_file: Path, reference: tuple[pa.Table, list[tuple[bytes, bytes]]],
        tmp_path: Path, backend: str, kills: int) -> None:
    expected_table, expected_signals = reference
    (tmp_path / "job.yaml").write_text(JOB)
    signals = unique(f"crash-signals-{backend}")
    topic = unique(f"crash-ticks-{backend}")  # the reference's ticks, arriving as the job runs
    feeder = _paced(kafka_broker.bootstrap, topic, pq.read_table(ticks_file), seconds=15)
    env = _env(kafka_broker, topic, signals, backend, unique("g"))
    rng = random.Random(int(os.environ.get("TICKFLOW_CRASH_SEED", "7")))
    # the first kill may land before the first periodic checkpoint: the run resumes from
    # the one taken before reading, and its signals already written are not written again
    targets = sorted(rng.sample(range(ROWS // 10, ROWS * 3 // 4, 4_000), kills))
    if backend == "rocksdb":
        targets.insert(0, 0)
    for target in targets:
        _kill_after(tmp_path, env, target, rng)
    assert _rows_checkpointed(tmp_path) < ROWS  # every kill came before the end
    feeder.join(60)
    assert not (tmp_path / "out" / "features.parquet").exists()
    killed_signals = len(_signals(kafka_broker.bootstrap, signals))
    # On a busy machine the killed run may already have written every signal before its next
    # checkpoint; the resume must then write none of them again, which the checks below prove.
    assert 0 < killed_signals <= len(expected_signals)

    err = _finish(tmp_path, env)
    assert_tables_equal(expected_table, pq.read_table(tmp_path / "out" / "features.parquet"))
    actual = _signals(kafka_broker.bootstrap, signals)
    assert Counter(actual) == Counter(expected_signals)  # none lost, none twice
    assert actual == expected_signals  # and in the same order (one partition)
    assert "Traceback" not in err

    if backend != "rocksdb":
        return
    # a restart after the end resumes from the last checkpoint and adds nothing
    _finish(tmp_path, env)
    assert pq.read_metadata(tmp_path / "out" / "features.parquet").num_rows == ROWS
    assert _signals(kafka_broker.bootstrap, signals) == expected_signals


@pytest.mark.slow
def test_a_kill_before_the_first_periodic_checkpoint_writes_no_signal_twice(
        kafka_broker, ticks_file: Path, reference: tuple[pa.Table, list[tuple[bytes, bytes]]],
        tmp_path: Path) -> None:
    """A run from empty state checkpoints before it reads: killed once signals are out but
    long before its first periodic checkpoint, the restart resumes from that one and skips
    the signals the topic already holds."""
    expected_table, expected_signals = reference
    (tmp_path / "job.yaml").write_text(JOB.replace("every: 200ms", "every: 1h"))
    signals = unique("crash-signals-early")
    topic = unique("crash-ticks-early")
    feeder = _paced(kafka_broker.bootstrap, topic, pq.read_table(ticks_file), seconds=10)
    env = _env(kafka_broker, topic, signals, "rocksdb", unique("g"))
    proc = _start(tmp_path, env)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"the job ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no signals appeared"
        with contextlib.suppress(Exception):  # the topic may not exist yet
            if len(_signals(kafka_broker.bootstrap, signals)) >= 50:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _rows_checkpointed(tmp_path) == 0  # only the checkpoint taken before reading
    written = len(_signals(kafka_broker.bootstrap, signals))
    assert 50 <= written < len(expected_signals)
    feeder.join(60)
    err = _finish(tmp_path, env)
    assert "Traceback" not in err
    assert _signals(kafka_broker.bootstrap, signals) == expected_signals
    assert_tables_equal(expected_table, pq.read_table(tmp_path / "out" / "features.parquet"))


@pytest.mark.slow
def test_another_topic_or_a_changed_layout_is_refused_until_reset(
        kafka_broker, ticks_topic: str, tmp_path: Path) -> None:
    """A checkpoint resumes only the topic it was taken on (a topic of the same name on a
    restarted memory-only broker has a new id: refused the same way) and only the same state
    layout; ``--reset-state`` starts over."""
    (tmp_path / "job.yaml").write_text(JOB)
    env = _env(kafka_broker, ticks_topic, unique("sig"), "rocksdb", unique("g"))
    _kill_after(tmp_path, env, ROWS // 5, random.Random(1))
    manifest_dir = max((tmp_path / ".tickflow" / "state" / "livecrash" / "checkpoints")
                       .glob("0*"))
    manifest = json.loads((manifest_dir / "MANIFEST.json").read_text())
    assert manifest["sources"][0]["topic"] == ticks_topic
    offsets = manifest["sources"][0]["offsets"]
    assert list(offsets) == ["0"] and 0 < offsets["0"] <= ROWS
    assert manifest["rows"] == offsets["0"]  # no dead letters here: one row per offset
    other = unique("other-ticks")
    proc = _start(tmp_path, {**env, "TICKS_TOPIC": other})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"the checkpoint is of topic {ticks_topic!r}" in err.decode()
    assert "--reset-state" in err.decode() and "Traceback" not in err.decode()

    # a changed state layout is refused too, until --reset-state
    changed = ("--set", "steps[2].params.window=60")
    proc = _start(tmp_path, env, *changed)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "different state layout" in err.decode() and "--reset-state" in err.decode()
    _finish(tmp_path, env, *changed, "--reset-state")
    assert pq.read_metadata(tmp_path / "out" / "features.parquet").num_rows == ROWS


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["rocksdb", "tiledb"])
def test_shipped_live_job_checkpoints_the_core_features(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``run-job jobs/live.yaml --state-backend B --replay FILE``: the core feature set (with
    stateless steps and two-float ring fields) checkpoints, and its state reads back for every
    key; a second run (a new embedded broker, empty) says why it starts over."""
    from tickflow.engine.checkpoint import CheckpointStore
    from tickflow.engine.cli import main
    from tickflow.engine.state.backend import get_backend

    capture = tmp_path / "sim.parquet"
    write_simulated_parquet(capture, rows=20_000, symbols=4, seed=9)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    args = [str(ROOT / "jobs/live.yaml"), "--replay", str(capture), "--quiet",
            "--state-backend", backend]
    assert main(args) == 0
    store = CheckpointStore(tmp_path / ".tickflow" / "state" / "crypto-live")
    problems: list[str] = []
    found = store.latest_good(get_backend(backend), problems)
    assert found is not None and not problems
    manifest, snapshot = found
    assert manifest.rows == 20_000 and not manifest.is_final
    assert manifest.sources[0]["offsets"] == {"0": 20_000}
    assert len(snapshot.keys) == 4
    assert len(snapshot.steps) == len(manifest.layout) > 30
    stateful = [s for s, fields in snapshot.steps.items() if fields]
    assert stateful and all(len(next(iter(snapshot.steps[s].values()))) == 4 for s in stateful)
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0
    assert "the embedded broker starts empty each run" in capsys.readouterr().err
    assert pq.read_metadata(tmp_path / "out" / "live_features.parquet").num_rows == 20_000
