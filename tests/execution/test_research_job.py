"""The research job end to end, as a user runs it: run-job jobs/research.yaml."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.report_html import plots
from tickflow.connectors.parquet import read_provenance
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def research_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("research")
    ticks = tmp / "ticks.parquet"
    write_simulated_parquet(ticks, rows=60_000, symbols=4, seed=11)
    out = tmp / "out"
    env = {"TICKS": str(ticks), "OUT_DIR": str(out), "PATH": "", "HOME": str(tmp)}
    # the user's numba cache all the same: under a fresh HOME every run compiled every kernel
    # again (~30 s of this module's ~32; compiling is not what it tests)
    env.update({k: os.environ[k] for k in ("NUMBA_CACHE_DIR",) if k in os.environ} or
               {"XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")})
    job = str(ROOT / "jobs" / "research.yaml")
    proc = subprocess.run([sys.executable, "-m", "tickflow.engine.cli", job], capture_output=True,
                          text=True, env=env, timeout=600, check=False, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_writes_enriched_parquet_with_forty_feature_columns(research_run: tuple[Path, str]) -> None:
    out, _ = research_run
    table = pq.read_table(out / "research_features.parquet")
    assert table.num_rows == 60_000
    raw = {"timestamp", "symbol", "exchange", "price", "best_bid", "best_ask", "best_bid_size",
           "best_ask_size", "last_size", "volume_24h", "sequence"}
    features = [c for c in table.column_names if c not in raw]
    assert len(features) >= 44  # 41 features + 3 signals
    for col in ("zscore", "rsi", "macd_hist", "bb_upper", "cusum_alarm", "var", "cvar",
                "microprice", "ofi", "buy", "sell", "regime_change"):
        assert col in features
    rsi = table.column("rsi").to_numpy(zero_copy_only=False)
    assert np.nanmin(rsi) >= 0 and np.nanmax(rsi) <= 100


def test_output_records_its_provenance(research_run: tuple[Path, str]) -> None:
    out, _ = research_run
    meta = read_provenance(out / "research_features.parquet")
    yaml_text = (ROOT / "jobs" / "research.yaml").read_text()
    assert meta["job_yaml"] == yaml_text
    assert meta["job_sha256"] == hashlib.sha256(yaml_text.encode()).hexdigest()
    assert meta["job_name"] == "crypto-research"
    assert meta["version"]


def test_prints_statistics_and_correlations_and_writes_the_report(
        research_run: tuple[Path, str]) -> None:
    out, stdout = research_run
    assert "per-symbol statistics" in stdout
    assert "correlations" in stdout
    assert "BTC-USD" in stdout and "signals: buy=" in stdout
    html = (out / "research_report.html").read_text()
    assert "BTC-USD" in html
    assert {"return_correlation", "feature_correlation", "feature_distributions"} <= \
        set(plots(html))


def test_editing_the_yaml_changes_the_output(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=5_000, symbols=2, seed=5)
    job = tmp_path / "job.yaml"
    job.write_text(f"""\
name: edit
mode: research
sources: [{{kind: parquet, path: {ticks}}}]
steps:
  - kernel: sma
    params: {{window: 20}}
sinks: [{{kind: parquet, path: {tmp_path}/out.parquet}}]
""")
    assert main([str(job), "--quiet"]) == 0
    first = pq.read_table(tmp_path / "out.parquet").column("sma").to_numpy()
    assert main([str(job), "--quiet", "--set", "steps[0].params.window=5"]) == 0
    second = pq.read_table(tmp_path / "out.parquet").column("sma").to_numpy()
    assert np.isnan(first[:2]).all() and not np.array_equal(first, second, equal_nan=True)
    job.write_text(job.read_text().replace("  - kernel: sma", "  - kernel: ewma\n  - kernel: sma"))
    assert main([str(job), "--quiet"]) == 0
    assert "ewma" in pq.read_table(tmp_path / "out.parquet").column_names
