"""Shard paging (``state.page_keys``) and the simulator's resumable position.

Paging must not change a single output value, must hold no more than one page of keys in the
lanes' arrays, and must survive a SIGKILL and resume (simulator source, tiledb backend).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.state.test_crash_recovery import assert_tables_equal
from tickflow.connectors.base import RunContext
from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.local import Pipeline
from tickflow.engine.loader import load_job
from tickflow.engine.state.backend import get_backend
from tickflow.engine.state.paging import PagedState

JOB = """\
name: many
mode: research
sources:
  - kind: simulator
    rows: 48000
    symbols: 1500
    ticks_per_second: 3000
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: log_returns}
  - {kernel: rolling_zscore, params: {window: 20}}
  - {kernel: rolling_std, params: {window: 5s}}
signals:
  up: zscore > 1
sinks:
  - kind: parquet
    path: out/features.parquet
state: {backend: tiledb, page_keys: 500, checkpoint: {every: 1}}
executor: {workers: 2, morsel_rows: 8192, progress: false}
"""


@pytest.fixture(scope="module")
def jobdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("paging")
    (d / "job.yaml").write_text(JOB)
    return d


@pytest.fixture(scope="module")
def reference(jobdir: Path) -> pa.Table:
    from tickflow.engine.cli import main

    with contextlib.chdir(jobdir):
        assert main(["run", "job.yaml", "-q", "--state-backend", "memory",
                     "--set", "sinks[0].path=ref.parquet"]) == 0
    return pq.read_table(jobdir / "ref.parquet")


@pytest.mark.parametrize("backend", ["rocksdb", "tiledb"])
def test_paged_state_gives_the_same_output_and_holds_one_page(backend: str, jobdir: Path,
                                                              reference: pa.Table,
                                                              tmp_path: Path) -> None:
    job = compile_job(load_job(jobdir / "job.yaml", overrides=["sinks=[]"]))
    source = SimulatorSource(job.sources[0].config, job.context)
    pipeline = Pipeline(job, 2)
    pager = PagedState(pipeline, get_backend(backend), tmp_path / "pages", page_keys=500)
    pager.reset()
    out = []
    for batch in source.batches(None, 8192):
        out.append(pager.process(batch))
        for lane in pipeline.lanes:  # never more than a page's keys (of this lane) in RAM
            assert all(st.capacity <= 500 for st in lane.states)
    pipeline.close()
    assert len(pager.keys) == 1500 and pager.max_page_rows == 500
    assert len(pager.live) == 3
    assert_tables_equal(reference, pa.Table.from_batches(out))


def test_simulator_seek_continues_exactly_where_position_was() -> None:
    cfg = SimulatorConfig(rows=50_000, symbols=30, seed=4)
    full = pa.Table.from_batches(list(SimulatorSource(cfg, RunContext("t")).batches(None, 7_000)))
    first = SimulatorSource(cfg, RunContext("t"))
    it = first.batches(None, 7_000)
    next(it)
    next(it)
    position = first.position()
    assert position == {"rows": 14_000}
    resumed = SimulatorSource(cfg, RunContext("t"))
    resumed.seek(position)
    rest = pa.Table.from_batches(list(resumed.batches(None, 9_000)))
    assert rest.equals(full.slice(14_000))


@pytest.mark.slow
def test_a_paged_tiledb_job_killed_mid_run_resumes_to_the_same_output(
        jobdir: Path, reference: pa.Table) -> None:
    cwd = jobdir / "killed"
    cwd.mkdir()
    (cwd / "job.yaml").write_text(JOB)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    checkpoints = cwd / ".tickflow" / "state" / "many" / "checkpoints"
    deadline = time.monotonic() + 120
    while len([p for p in checkpoints.glob("0*")]) < 2 if checkpoints.is_dir() else True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert "resumed from checkpoint" in done.stderr.decode()
    assert_tables_equal(reference, pq.read_table(cwd / "out" / "features.parquet"))
    from tickflow.engine.cli import main

    with contextlib.chdir(cwd):
        assert main(["state", "job.yaml", "--key", "BTC-USD"]) == 0
