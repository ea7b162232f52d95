"""One job per state folder: a second job is refused naming the holder; a dead holder's lock
is taken over. Real processes, real files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.errors import StateError
from tickflow.engine.state.lock import (
    acquire_state_lock,
    read_lock_owner,
    release_state_lock,
)

JOB = """\
name: locked
mode: research
sources:
  - kind: parquet
    path: ticks.parquet
steps:
  - {kernel: ewma, params: {span: 20}}
sinks:
  - kind: parquet
    path: out/features.parquet
state:
  backend: rocksdb
  checkpoint: {every: 2}
executor: {workers: 1, morsel_rows: 2000, progress: false}
"""


def _run(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                           "--quiet"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_simulated_parquet(tmp_path / "ticks.parquet", rows=10_000, symbols=3, seed=5)
    (tmp_path / "job.yaml").write_text(JOB)
    return tmp_path


def _hold_in_child(folder: Path) -> subprocess.Popen[str]:
    """Another live process that holds ``folder`` until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from tickflow.engine.state.lock import acquire_state_lock
        acquire_state_lock({str(folder)!r})
        print("held", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ,
                            "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_job_on_a_held_state_folder_is_refused_naming_the_holder(workdir):
    holder = _hold_in_child(workdir / ".tickflow" / "state" / "locked")
    try:
        result = _run(workdir)
    finally:
        holder.communicate("")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "is in use by another job" in message and "Traceback" not in result.stderr
    assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in message
    assert not (workdir / "out" / "features.parquet").exists()
    # once the holder is gone (its lock released by the kernel), the job runs
    assert _run(workdir).returncode == 0
    assert (workdir / "out" / "features.parquet").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(workdir):
    folder = workdir / ".tickflow" / "state" / "locked"
    holder = _hold_in_child(folder)
    holder.kill()
    holder.communicate()  # reaps it and closes its pipes
    assert read_lock_owner(folder)["pid"] == holder.pid  # the stale file is still there
    result = _run(workdir)
    assert result.returncode == 0, result.stderr
    assert read_lock_owner(folder)["pid"] not in (holder.pid, os.getpid())


def test_the_lock_is_reentrant_in_one_process_and_released_on_request(tmp_path):
    folder = tmp_path / "state"
    assert acquire_state_lock(folder) == acquire_state_lock(folder)
    owner = read_lock_owner(folder)
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    child = _run_acquire(folder)
    assert child.returncode == 1 and f"pid {os.getpid()}" in child.stderr
    release_state_lock(folder)
    assert _run_acquire(folder).returncode == 0


def _run_acquire(folder: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import sys
        from tickflow.engine.errors import StateError
        from tickflow.engine.state.lock import acquire_state_lock
        try:
            acquire_state_lock({str(folder)!r})
        except StateError as exc:
            sys.exit(str(exc))
    """)
    return subprocess.run([sys.executable, "-c", code], env={**os.environ,
                          "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)


def test_an_unwritable_state_folder_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateError, match="cannot create its lock file"):
        acquire_state_lock(blocker / "state")
