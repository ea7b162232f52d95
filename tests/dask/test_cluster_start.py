"""``run-job --cluster local`` starts its LocalCluster before the compile, and never leaks it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import tickflow.engine.executors.dask_start as dask_start
from tests.conftest import ROOT
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every LocalCluster the CLI starts: when, with or without dashboard, and the cluster."""
    made: list[dict[str, Any]] = []
    real = dask_start.local_cluster

    def recording(workers: int | None, *, dashboard: bool = True,
                  forkserver: bool = False) -> tuple[Any, Any]:
        entry: dict[str, Any] = {"at": time.monotonic(), "dashboard": dashboard,
                                 "forkserver": forkserver}
        made.append(entry)
        client, cluster = real(workers, dashboard=dashboard, forkserver=forkserver)
        entry["cluster"] = cluster
        entry["booted"] = set(client.run(_booted).values())  # what each worker came with
        return client, cluster

    monkeypatch.setattr(dask_start, "local_cluster", recording)
    return made


def _booted() -> tuple[bool, str | None]:
    """Whether this worker came with the engine loaded, and the OMP_NUM_THREADS its parent
    (the forkserver, which imported numpy) started with."""
    import os
    import sys
    from pathlib import Path

    environ = Path(f"/proc/{os.getppid()}/environ").read_bytes().split(b"\0")
    omp = next((v.split(b"=", 1)[1].decode() for v in environ
                if v.startswith(b"OMP_NUM_THREADS=")), None)
    return "tickflow.engine.executors.dask_boot" in sys.modules, omp


def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=3_000, symbols=3, seed=5)
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))


def _join_closers() -> None:
    for t in threading.enumerate():
        if t.name in ("tickflow-dask-start", "tickflow-dask-close"):
            t.join(timeout=120)


def test_the_cluster_starts_before_the_compile_and_the_run_closes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        started: list[dict[str, Any]]) -> None:
    import tickflow._engine_bridge as bridge

    _env(tmp_path, monkeypatch)
    compiled_at: list[float] = []
    real_compile = bridge.compile_loaded

    def compile_loaded(*args: Any, **kwargs: Any) -> Any:
        compiled_at.append(time.monotonic())
        return real_compile(*args, **kwargs)

    monkeypatch.setattr(bridge, "compile_loaded", compile_loaded)
    code = main([str(ROOT / "jobs" / "research.yaml"), "--cluster", "local", "--workers", "1",
                 "--set", "report=null", "--quiet"])
    assert code == 0
    assert len(started) == 1 and compiled_at
    assert started[0]["at"] < compiled_at[0]  # the workers come up while the client compiles
    assert started[0]["dashboard"] is False  # --quiet shows no link: no dashboard is served
    # the worker is a fork of the forkserver that loaded the engine before it was asked for one
    # and it was loaded with the environment a Nanny gives a spawned worker (one BLAS thread)
    assert started[0]["forkserver"] is True and started[0]["booted"] == {(True, "1")}
    assert started[0]["cluster"].status.name == "closed"
    out = tmp_path / "out" / "research_features.parquet"
    assert pq.read_table(out).num_rows == 3_000


def test_a_compile_error_is_reported_and_the_started_cluster_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _env(tmp_path, monkeypatch)
    code = main([str(ROOT / "jobs" / "research.yaml"), "--cluster", "local", "--workers", "1",
                 "--set", "report=null", "--set", "signals.buy=zscore <"])
    assert code == 2
    assert "cannot parse rule 'zscore <'" in capsys.readouterr().err
    _join_closers()
    assert len(started) == 1
    assert started[0]["dashboard"] is True
    assert started[0]["cluster"].status.name == "closed"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["live", "export", "backtest"])
def test_jobs_that_never_run_on_dask_start_no_cluster(tmp_path: Path, mode: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(f"name: j\nmode: {mode}\nsources: [{{kind: simulator}}]\n")
    assert dask_start.start_for_job(str(job), [], 1, dashboard=False) is None
    assert not [t for t in threading.enumerate() if t.name == "tickflow-dask-start"]


def test_run_job_as_its_own_process_ends_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    """The process exits right after the commit (dask_start.exit_now): the outputs are whole,
    nothing is printed about leaked semaphores, and its workers and forkserver exit with it."""
    import os
    import subprocess
    import sys

    import psutil

    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=3_000, symbols=3, seed=5)
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(tmp_path / "out")}
    proc = subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli",
                             str(ROOT / "jobs" / "research.yaml"), "--cluster", "local",
                             "--workers", "2", "--set", "report=null"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    family: set[int] = set()
    while proc.poll() is None:  # the client's descendants: forkserver, workers, tracker
        try:
            family |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "processed 3,000 rows" in out and "2 parts" in out  # printed before the exit
    assert "leaked" not in err and "Traceback" not in err, err
    assert len(family) >= 3  # at least the forkserver and two workers were seen
    deadline = time.monotonic() + 30
    while (alive := [p for p in family if psutil.pid_exists(p) and
                     psutil.Process(p).status() != psutil.STATUS_ZOMBIE]) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, [" ".join(psutil.Process(p).cmdline())[:80] for p in alive]
    parts = sorted((tmp_path / "out" / "research_features.parquet").iterdir())
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 3_000
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("forkserver", [True, False])
def test_only_the_forkserver_skips_its_interpreter_teardown(forkserver: bool) -> None:
    """dask_boot.py makes the forkserver end by os._exit (its teardown took 0.3-0.45 CPU-s
    after run-job returned); any other process importing it keeps its own exit and code."""
    import os
    import subprocess
    import sys

    code = ("import sys, tickflow.engine.executors.dask_boot; "
            "print('exiting', flush=True); sys.exit(3)")
    env = {k: v for k, v in os.environ.items() if k != dask_start.FORKSERVER_PARENT}
    if forkserver:  # what start_forkserver sets while it spawns the server: its own pid
        env[dask_start.FORKSERVER_PARENT] = str(os.getpid())
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout == "exiting\n"
    assert out.returncode == (0 if forkserver else 3)
