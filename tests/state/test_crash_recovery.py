"""Crash recovery for real: a research job over Parquet, run as a subprocess with the rocksdb
backend, killed with SIGKILL at random points several times, restarted, and its final output
compared with an uninterrupted run: no row lost, none duplicated, every value equal.

Also: a damaged newest checkpoint is skipped for the previous good one, a changed state layout is
refused with a clear message, and ``run-job state`` shows the checkpoints and one key's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main

JOB = """\
name: crashy
mode: research
sources:
  - kind: parquet
    path: ticks.parquet
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: log_returns}
  - {kernel: rolling_zscore, params: {window: 50}}
  - {kernel: rolling_std, params: {window: 30s}}
signals:
  up: zscore > 1.5
sinks:
  - kind: parquet
    path: out/features.parquet
    row_group_rows: 4096
state:
  backend: rocksdb
  checkpoint: {every: 3}
executor: {workers: 2, morsel_rows: 3000, progress: false}
"""

ROWS = 120_000


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("crash")
    # small row groups, so that a resume lands inside the file, not on a row group boundary
    write_simulated_parquet(d / "ticks.parquet", rows=ROWS, symbols=25, seed=11,
                            row_group_rows=10_000, batch_rows=10_000)
    (d / "job.yaml").write_text(JOB)
    return d


@pytest.fixture(scope="module")
def reference(workdir: Path) -> pa.Table:
    """The uninterrupted run (memory backend: no checkpoints at all)."""
    with contextlib.chdir(workdir):
        assert main(["run", "job.yaml", "--quiet", "--state-backend", "memory",
                     "--set", "sinks[0].path=ref.parquet"]) == 0
    return pq.read_table(workdir / "ref.parquet")


def assert_tables_equal(expected: pa.Table, actual: pa.Table) -> None:
    """Same rows in the same order, same values (NaN equal to NaN)."""
    assert actual.num_rows == expected.num_rows
    assert actual.schema.names == expected.schema.names
    for name in expected.column_names:
        x = expected[name].to_numpy(zero_copy_only=False)
        y = actual[name].to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)  # treats NaN == NaN
        else:
            assert (x == y).all(), name


def _start(cwd: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                             *extra], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _checkpoints(cwd: Path) -> list[int]:
    d = cwd / ".tickflow" / "state" / "crashy" / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _rows_checkpointed(cwd: Path) -> int:
    d = cwd / ".tickflow" / "state" / "crashy" / "checkpoints"
    rows = 0
    for seq in _checkpoints(cwd):
        with contextlib.suppress(OSError, ValueError):  # pruned meanwhile
            rows = max(rows, json.loads((d / f"{seq:08d}" / "MANIFEST.json").read_text())["rows"])
    return rows


def _kill_at(cwd: Path, rows: int, rng: random.Random, timeout_s: float = 120) -> None:
    """Start the job and SIGKILL it a random moment after it checkpointed ``rows`` rows."""
    proc = _start(cwd)
    deadline = time.monotonic() + timeout_s
    while _rows_checkpointed(cwd) < rows:
        assert proc.poll() is None, f"the job ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipes
    assert proc.returncode == -signal.SIGKILL


def _finish(cwd: Path, *extra: str) -> str:
    proc = _start(cwd, *extra)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def _fresh(workdir: Path, name: str) -> Path:
    d = workdir / name
    d.mkdir()
    (d / "job.yaml").write_text(JOB)
    (d / "ticks.parquet").symlink_to(workdir / "ticks.parquet")
    return d


@pytest.mark.slow
def test_sigkill_several_times_then_restart_gives_the_uninterrupted_output(
        workdir: Path, reference: pa.Table) -> None:
    """Three SIGKILLs at random points, then the newest checkpoint is damaged (an SST file
    truncated): the restart skips it, resumes from the one before, and still writes every row
    exactly once."""
    cwd = _fresh(workdir, "kills")
    rng = random.Random(int(os.environ.get("TICKFLOW_CRASH_SEED", "5")))
    # kills at random points, each after more rows than the last (so each run progresses)
    for target in sorted(rng.sample(range(ROWS // 10, ROWS * 3 // 4, 3_000), 3)):
        _kill_at(cwd, target, rng)
    assert not (cwd / "out" / "features.parquet").exists()  # nothing final before the end
    assert len(_checkpoints(cwd)) >= 2
    newest = cwd / ".tickflow" / "state" / "crashy" / "checkpoints" / \
        f"{_checkpoints(cwd)[-1]:08d}"
    victim = max((p for p in (newest / "rocksdb").iterdir() if p.suffix == ".sst"),
                 key=lambda p: p.stat().st_size)
    with victim.open("r+b") as fh:
        fh.truncate(victim.stat().st_size // 2)
    err = _finish(cwd)
    assert "skipping a bad checkpoint" in err and "truncated" in err
    assert "resumed from checkpoint" in err
    assert_tables_equal(reference, pq.read_table(cwd / "out" / "features.parquet"))
    assert not (cwd / "out" / ".features.parquet.parts").exists()  # recovery files removed


@pytest.mark.slow
def test_a_changed_state_layout_is_refused_until_reset(workdir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cwd = _fresh(workdir, "layout")
    _kill_at(cwd, ROWS // 4, random.Random(3))
    job = str(cwd / "job.yaml")
    changed = ["--set", "steps[2].params.window=60"]
    with contextlib.chdir(cwd):
        assert main(["run", job, "--quiet", *changed]) == 1
        err = capsys.readouterr().err
        assert "different state layout" in err and "--reset-state" in err
        assert main(["state", job, "--key", "BTC-USD"]) == 0
        out = capsys.readouterr().out
        assert "good" in out and "keys" in out
        assert "state of key 'BTC-USD'" in out and "ring_head" in out
        assert main(["run", job, "--quiet", "--reset-state", *changed]) == 0
        assert pq.read_metadata(cwd / "out" / "features.parquet").num_rows == ROWS
        assert main(["state", job, "--keys", "3"]) == 0
        assert "final" in capsys.readouterr().out
