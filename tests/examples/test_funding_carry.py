"""jobs/examples/funding_carry.yaml on the funding simulator: every column checked by formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.base import RunContext
from tickflow.connectors.funding_simulator import FundingSimulatorConfig, FundingSimulatorSource
from tickflow.engine.cli import main

JOB = ROOT / "jobs" / "examples" / "funding_carry.yaml"


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("carry")
    mp = pytest.MonkeyPatch()
    mp.setenv("ROWS", "30000")
    mp.setenv("OUT_DIR", str(out))
    try:
        assert main(["run", str(JOB), "-q"]) == 0
    finally:
        mp.undo()
    return pq.read_table(out / "funding_carry.parquet")


def col(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy()


def test_the_carry_columns_follow_their_formulas(output: pa.Table) -> None:
    t = output
    assert t.num_rows == 30000
    np.testing.assert_allclose(col(t, "funding_apr"), col(t, "funding_rate") * 3 * 365,
                               rtol=1e-12)
    basis = (col(t, "perp_price") / col(t, "spot_price") - 1) * 365 / 30
    np.testing.assert_allclose(col(t, "basis_apr"), basis, rtol=1e-9, atol=1e-15)
    edge = (basis + col(t, "funding_apr")) * 1e4 - 2 * 10
    np.testing.assert_allclose(col(t, "carry_edge_bps"), edge, rtol=1e-9)
    smooth = col(t, "carry_edge_smooth_bps")
    np.testing.assert_array_equal(col(t, "carry_alert"), (smooth > 2000).astype(np.int8))
    alerts = col(t, "carry_alert").sum()
    assert 0 < alerts < t.num_rows / 2  # the threshold is crossed, but not all the time


def test_the_funding_rate_is_the_clamped_premium(output: pa.Table) -> None:
    premium = col(output, "perp_price") / col(output, "spot_price") - 1
    expected = premium + np.clip(0.0001 - premium, -0.0005, 0.0005)
    np.testing.assert_allclose(col(output, "funding_rate"), expected, atol=1e-12)


def test_the_premium_has_the_configured_mean_and_spread() -> None:
    cfg = FundingSimulatorConfig(rows=40_000, symbols=2, seed=2, premium_bps=3,
                                 premium_vol_bps=8, premium_half_life_s=2)
    t = pa.Table.from_batches(list(FundingSimulatorSource(cfg, RunContext("t")).batches()))
    premium = col(t, "perp_price") / col(t, "spot_price") - 1
    assert abs(premium.mean() - 3e-4) < 1.5e-4  # about 3 standard errors
    assert abs(premium.std() - 8e-4) < 1.5e-4


def test_the_funding_simulator_does_not_depend_on_batch_size() -> None:
    cfg = FundingSimulatorConfig(rows=70_000, symbols=2, seed=4)
    src = FundingSimulatorSource(cfg, RunContext(job_name="t"))
    whole = pa.Table.from_batches(list(src.batches(None, 70_000)))
    small = pa.Table.from_batches(list(src.batches(["timestamp", "perp_price"], 999)))
    assert whole.num_rows == small.num_rows == 70_000
    assert whole.select(["timestamp", "perp_price"]).equals(small)


def test_the_job_is_listed_in_the_cookbook() -> None:
    page = ROOT / "docs" / "cookbook" / "funding-carry.md"
    assert "jobs/examples/funding_carry.yaml" in page.read_text()
    assert Path(JOB).is_file()
