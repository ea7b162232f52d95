"""A live job as N member processes sharing a 4-partition tick topic, for real: the embedded
broker runs in the test, the members are `run-job` subprocesses with rocksdb state, and one of
two members is SIGKILLed mid-run. The union of the members' outputs (Parquet parts and Kafka
signal messages) must equal the output of the ordinary one-process job: nothing lost, nothing
written twice, the moved partitions' state restored from their checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.kafka.util import unique
from tests.state.test_crash_recovery import assert_tables_equal
from tickflow.connectors.replay import replay_to_kafka
from tickflow.connectors.simulator import write_simulated_parquet

PARTITIONS = 4
ROWS = 160_000

JOB = """\
name: members
mode: live
sources:
  - id: ticks
    kind: kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${TICKS_TOPIC}
    batch_size: 2000
    linger_ms: 5
    end_when_idle_s: ${IDLE}
    dead_letter_path: out/dead_letters.jsonl
${GROUP}
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: rolling_zscore, params: {window: 50}}
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
  checkpoint:
    every: ${CHECKPOINT_EVERY:-200ms}
executor: {kind: local, workers: 1}
"""

GROUP = "    group: {id: GROUP_ID, session_timeout: 3s, heartbeat: 300ms}"
SORT = [("symbol", "ascending"), ("timestamp", "ascending"), ("sequence", "ascending")]


@pytest.fixture(scope="module")
def ticks_topic(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("members_ticks")
    write_simulated_parquet(d / "ticks.parquet", rows=ROWS, symbols=12, seed=5)
    topic = unique("members-ticks")
    n = replay_to_kafka(d / "ticks.parquet", kafka_broker.bootstrap, topic, "max",
                        partitions=PARTITIONS)
    assert n == ROWS
    return topic


def _env(broker, topic: str, signals: str, backend: str, idle: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP": broker.bootstrap,
            "TICKS_TOPIC": topic, "SIGNALS_TOPIC": signals, "BACKEND": backend, "IDLE": idle}


def _write_job(cwd: Path, group: str | None) -> None:
    line = GROUP.replace("GROUP_ID", group) if group else ""
    (cwd / "job.yaml").write_text(JOB.replace("${GROUP}", line))


def _start(cwd: Path, env: dict[str, str], quiet: bool = True) -> subprocess.Popen[bytes]:
    """``run-job``; a member not ``quiet`` says on stderr which partitions it owns."""
    return subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                             *(["--quiet"] if quiet else [])], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(proc: subprocess.Popen[bytes]) -> str:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    return err.decode()


def _signals(bootstrap: str, topic: str) -> Counter[tuple[bytes, bytes]]:
    from tickflow.connectors.kafka_client import client_settings
    from tickflow.connectors.kafka_topics import read_to_end

    _, rows = read_to_end(client_settings(bootstrap), topic, {0: 0})
    return Counter(row for _, row in rows)


def _table(path: Path) -> pa.Table:
    return pq.read_table(path).sort_by(SORT)


@pytest.fixture(scope="module")
def reference(kafka_broker, ticks_topic: str, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[pa.Table, Counter[tuple[bytes, bytes]]]:
    """The ordinary job: one process reading every partition, memory state."""
    cwd = tmp_path_factory.mktemp("members_ref")
    _write_job(cwd, None)
    signals = unique("members-signals-ref")
    _wait(_start(cwd, _env(kafka_broker, ticks_topic, signals, "memory", "1.5")))
    table = _table(cwd / "out" / "features.parquet")
    assert table.num_rows == ROWS
    messages = _signals(kafka_broker.bootstrap, signals)
    assert sum(messages.values()) > 100
    return table, messages


def _parts(cwd: Path) -> list[Path]:
    return sorted((cwd / "out" / "features.parquet").glob("part-*.parquet"))


def _partition_rows(cwd: Path) -> dict[int, int]:
    """Per partition: the offset its newest checkpoint covers (absent before one)."""
    out: dict[int, int] = {}
    for folder in (cwd / ".tickflow" / "state" / "members").glob("partition-*"):
        for cp in (folder / "members" / "checkpoints").glob("0*"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                offsets = json.loads((cp / "MANIFEST.json").read_text())["sources"][0]["offsets"]
                for p, o in offsets.items():
                    out[int(p)] = max(out.get(int(p), 0), int(o))
    return out


def _owners(cwd: Path) -> dict[int, int]:
    """Per partition: the pid holding (or last holding) its state folder."""
    from tickflow.engine.state.lock import read_lock_owner

    out = {}
    for folder in (cwd / ".tickflow" / "state" / "members").glob("partition-*"):
        pid = read_lock_owner(folder / "members").get("pid")
        if pid:
            out[int(folder.name.split("-")[1])] = int(pid)  # type: ignore[arg-type]
    return out


@pytest.mark.slow
def test_two_members_give_the_union_of_one_process(
        kafka_broker, ticks_topic: str, reference: tuple[pa.Table, Counter], tmp_path: Path,
        ) -> None:
    expected_table, expected_signals = reference
    _write_job(tmp_path, unique("members-g"))
    signals = unique("members-signals-two")
    env = _env(kafka_broker, ticks_topic, signals, "rocksdb", "4")
    procs = [_start(tmp_path, env, quiet=False) for _ in range(2)]
    errs = [_wait(p) for p in procs]
    parts = _parts(tmp_path)
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(PARTITIONS)]
    union = pa.concat_tables([pq.read_table(p) for p in parts]).sort_by(SORT)
    assert union.num_rows == ROWS
    assert_tables_equal(expected_table, union.select(expected_table.column_names))
    assert _signals(kafka_broker.bootstrap, signals) == expected_signals
    # the group split the topic: each member owned some partitions, never all four at once
    for err in errs:
        owned = [line for line in err.splitlines() if "member of group" in line]
        assert any(line.endswith(("[0, 1]", "[2, 3]")) for line in owned), err
    assert set(_owners(tmp_path).values()) <= {p.pid for p in procs}


@pytest.mark.slow
def test_a_killed_member_partitions_move_to_the_survivor(
        kafka_broker, ticks_topic: str, reference: tuple[pa.Table, Counter], tmp_path: Path,
        ) -> None:
    expected_table, expected_signals = reference
    _write_job(tmp_path, unique("members-g"))
    signals = unique("members-signals-kill")
    # a checkpoint after every batch: the victim's first checkpoints come while it is still
    # early in its partitions (every 200 ms, it could drain them first on a quiet machine)
    env = {**_env(kafka_broker, ticks_topic, signals, "rocksdb", "8"), "CHECKPOINT_EVERY": "1"}
    victim, survivor = _start(tmp_path, env), _start(tmp_path, env, quiet=False)
    deadline = time.monotonic() + 60
    while True:  # until the victim owns partitions and has checkpointed some of their rows
        assert victim.poll() is None and survivor.poll() is None, "a member ended early"
        assert time.monotonic() < deadline, "the victim never checkpointed its partitions"
        owned = [p for p, pid in _owners(tmp_path).items() if pid == victim.pid]
        rows = _partition_rows(tmp_path)
        if owned and all(rows.get(p, 0) > 0 for p in owned):
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    done = _partition_rows(tmp_path)
    assert any(done.get(p, 0) < ROWS // PARTITIONS // 2 for p in owned), \
        "the victim finished its partitions before it was killed: not a mid-run kill"
    err = _wait(survivor)
    for p in owned:  # the survivor took the victim's partitions and resumed their state
        assert _owners(tmp_path)[p] == survivor.pid
        assert f"partition {p}: tickflow: resumed from checkpoint" in err, err
    union = pa.concat_tables([pq.read_table(p) for p in _parts(tmp_path)]).sort_by(SORT)
    assert union.num_rows == ROWS  # nothing lost, nothing twice
    assert_tables_equal(expected_table, union.select(expected_table.column_names))
    assert _signals(kafka_broker.bootstrap, signals) == expected_signals


def test_cross_key_steps_and_memory_state_are_refused(tmp_path: Path) -> None:
    """A multi-member job splits keys by partition: a step reading several keys, or state
    that no other member could resume, is refused before anything runs."""
    import tickflow.api as tf
    from tickflow.engine.executors.live_members import MembersError, check_members

    _write_job(tmp_path, "g")
    env = {"KAFKA_BOOTSTRAP": "127.0.0.1:9", "TICKS_TOPIC": "t", "SIGNALS_TOPIC": "s",
           "IDLE": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.setenv("BACKEND", "memory")
        job = tf.load_job(tmp_path / "job.yaml").compiled()
        with pytest.raises(MembersError, match="on-disk state backend"):
            check_members(job)
        mp.setenv("BACKEND", "rocksdb")
        text = (tmp_path / "job.yaml").read_text().replace(
            "  - {kernel: rsi, params: {period: 14}}",
            "  - {kernel: rsi, params: {period: 14}}\n"
            "  - {kernel: log_returns}\n"
            "  - {kernel: hayashi_yoshida_corr, params: {a: BTC-USD, b: ETH-USD, window: 30s}}")
        (tmp_path / "job.yaml").write_text(text)
        job = tf.load_job(tmp_path / "job.yaml").compiled()
        with pytest.raises(MembersError, match="reads several keys"):
            check_members(job)

    from tickflow.connectors.kafka_source_config import KafkaSourceConfig

    with pytest.raises(ValueError, match="remove `partitions:`"):
        KafkaSourceConfig(group={"id": "g"}, partitions=[0, 1])
    # a broker embedded in each member would be a group of one
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.kafka_group import GroupMember
    from tickflow.engine.errors import SourceError

    member = GroupMember(KafkaSourceConfig(bootstrap="embedded", group={"id": "g"}),
                         RunContext(job_name="t"), print, print)
    with pytest.raises(SourceError, match="needs a broker they all reach"):
        member.join()
