"""examples/plugins: a user package outside the engine, its own tests, and a job that uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.engine.cli import main

EXAMPLE = ROOT / "examples" / "plugins"


def test_the_example_job_runs_with_the_plugin_kernel(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROWS", "20000")
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    assert main(["run", str(EXAMPLE / "jobs" / "ema_cross.yaml"), "-q"]) == 0
    table = pq.read_table(tmp_path / "ema_cross.parquet")
    cross = table.column("ema_cross").to_numpy()
    assert set(np.unique(cross[~np.isnan(cross)])) == {-1.0, 0.0, 1.0}
    long_entry = table.column("long_entry").to_numpy()
    rsi = table.column("rsi").to_numpy()
    np.testing.assert_array_equal(long_entry, ((cross == 1) & (rsi < 70)).astype(np.int8))
    assert main(["kernels", str(EXAMPLE / "jobs" / "ema_cross.yaml")]) == 0
    assert "ema_cross" in capsys.readouterr().out


def test_the_example_package_passes_its_own_tests(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "--basetemp", str(tmp_path / "basetemp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_example_package_advertises_its_kernels() -> None:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["tickflow.kernels"]["example_signals"]
    assert (EXAMPLE / (target.replace(".", "/") + ".py")).is_file()
