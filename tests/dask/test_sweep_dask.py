"""Backtest sweeps on a real Dask cluster (a LocalCluster of two worker processes): the same
ranked table as the local sweep, failed points reported with their parameters, and a clear
error when the scheduler is unreachable."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.sweep_dask import PointOutcome, run_sweep_dask
from tickflow.engine.backtest.sweep_run import run_sweep
from tickflow.engine.cli import main

pytestmark = pytest.mark.slow

JOB = str(ROOT / "jobs" / "backtest.yaml")


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=40_000, symbols=4, seed=5)
    return path


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN compares equal to itself here (an empty test split has NaN ratios)."""
    return [{k: ("nan" if v != v else v) for k, v in r.items()} for r in rows]


def test_dask_sweep_gives_the_local_table(ticks: Path, client: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKS", str(ticks))  # the client's; the workers get absolute paths
    sweep = SweepSpec.model_validate({
        "parameters": {"entry_z": [1.5, 2.0, 2.5], "steps.rsi.params.period": [14, 7]},
        "walk_forward": {"train_fraction": 0.6}})
    local = run_sweep(JOB, sweep, workers=1)
    seen: list[PointOutcome] = []
    connected: list[int] = []
    on_dask = run_sweep_dask(JOB, sweep, client=client, progress=seen.append,
                             on_connect=lambda c, n: connected.append(n))
    assert plain(on_dask) == plain(local)
    assert len(on_dask) == 6 and "error" not in on_dask[0]
    assert {r["train.trade_count"] for r in on_dask} != {0}   # the points really traded
    sharpe = [r["train.sharpe"] for r in on_dask]
    assert sharpe == sorted(sharpe, reverse=True)
    # every point ran as a task on a worker process, and both workers took some
    assert connected == [6] and sorted(o.index for o in seen) == list(range(6))
    # asked of the workers themselves: scheduler_info() is a cached view, seen empty under load
    workers = set(client.run(lambda: None))
    assert {o.worker for o in seen} == workers and len(workers) == 2


def test_failed_points_are_rows_with_their_parameters(ticks: Path, client: Any,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    # fraction 20 breaks the strategy on a worker (le=10); window 0 breaks the compile on the
    # client; the one good point still runs and ranks first
    params = "{strategy.sizing.fraction: [0.1, 20], steps.zscore_fast.params.window: [20, 0]}"
    code = main([JOB, "--sweep", "--cluster", client.scheduler.address,
                 "--set", f"sweep.parameters={params}"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"dask: {client.scheduler.address}, 2 workers, 4 sweep points" in out
    assert "failed point strategy.sizing.fraction=20, steps.zscore_fast.params.window=20:" in out
    assert "failed point strategy.sizing.fraction=0.1, steps.zscore_fast.params.window=0:" in out
    table = pq.read_table(tmp_path / "backtest-meanrev_sweep.parquet").to_pylist()
    assert len(table) == 4
    good, *bad = table
    assert (good["strategy.sizing.fraction"], good["steps.zscore_fast.params.window"]) == \
        (0.1, 20)
    assert good["error"] is None and good["train.trade_count"] > 0
    assert all(r["error"] and r["train.sharpe"] is None for r in bad)
    worker_side = next(r for r in bad if r["strategy.sizing.fraction"] == 20
                       and r["steps.zscore_fast.params.window"] == 20)
    assert "fraction" in worker_side["error"]
    client_side = [r for r in bad if r["steps.zscore_fast.params.window"] == 0]
    assert len(client_side) == 2 and all("window" in r["error"] for r in client_side)


def test_an_unreachable_scheduler_is_a_clear_error(ticks: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main([JOB, "--sweep", "--cluster", f"tcp://127.0.0.1:{port}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 5 s" in err
    assert "Traceback" not in err and elapsed < 30
    assert not (tmp_path / "backtest-meanrev_sweep.parquet").exists()
