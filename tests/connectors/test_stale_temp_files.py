"""A job killed by SIGKILL leaves its output's temporary file; the next run deletes it, and
never the temporary file of a writer that is still alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from tests.conftest import ROOT
from tickflow.connectors.parquet import AtomicParquetWriter
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.connectors.stale_temp import remove_dead_temp_files

JOB = """\
name: killed
mode: research
sources:
  - kind: parquet
    path: ticks.parquet
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: rolling_zscore, params: {window: 50}}
sinks:
  - kind: parquet
    path: out/features.parquet
    row_group_rows: 1024
executor: {workers: 1, morsel_rows: 2000, progress: false}
"""


def _start(cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                             "--quiet"], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _temps(cwd: Path) -> list[Path]:
    return sorted((cwd / "out").glob(".features.parquet.*.tmp"))


def test_the_temp_file_of_a_killed_job_is_deleted_by_the_next_run(tmp_path: Path) -> None:
    write_simulated_parquet(tmp_path / "ticks.parquet", rows=400_000, symbols=5, seed=3,
                            row_group_rows=2_000, batch_rows=2_000)
    (tmp_path / "job.yaml").write_text(JOB)
    proc = _start(tmp_path)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 0 for p in _temps(tmp_path)):
        assert proc.poll() is None, f"the job ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stale = _temps(tmp_path)
    assert len(stale) == 1 and f".{proc.pid}." in stale[0].name

    rerun = _start(tmp_path)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    assert _temps(tmp_path) == []
    assert (tmp_path / "out" / "features.parquet").stat().st_size > 0


def test_a_live_writers_temp_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = target.with_name(f".{target.name}.{sleeper.pid}.abcd1234.tmp")
        live.write_bytes(b"in progress")
        dead = target.with_name(f".{target.name}.{2**22 + 7}.abcd1234.tmp")  # no such pid
        dead.write_bytes(b"left behind")
        other = tmp_path / f".other.parquet.{2**22 + 7}.abcd1234.tmp"
        other.write_bytes(b"another target's")
        writer = AtomicParquetWriter(target, pa.schema([("x", pa.int64())]))
        assert live.exists() and not dead.exists() and other.exists()
        assert f".{os.getpid()}." in writer.tmp_path.name
        writer.abort()
        assert remove_dead_temp_files(target) == []
    finally:
        sleeper.kill()
        sleeper.communicate()
