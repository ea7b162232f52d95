"""jobs/examples/portfolio_risk.yaml: P&L, drawdown, VaR/CVaR, CUSUM and the kill switch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.engine.cli import main

JOB = ROOT / "jobs" / "examples" / "portfolio_risk.yaml"


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("risk")
    mp = pytest.MonkeyPatch()
    mp.setenv("OUT_DIR", str(out))
    mp.delenv("ROWS", raising=False)
    try:
        assert main(["run", str(JOB), "-q"]) == 0
    finally:
        mp.undo()
    return pq.read_table(out / "portfolio_risk.parquet")


def by_symbol(t: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    frame = t.select(["symbol", "log_return", "pnl", "drawdown", "var", "cvar"]).to_pydict()
    symbols = np.array(frame.pop("symbol"))
    cols = {k: np.array(v, dtype=float) for k, v in frame.items()}
    return {s: {k: v[symbols == s] for k, v in cols.items()} for s in np.unique(symbols)}


def test_pnl_and_drawdown_per_book(output: pa.Table) -> None:
    for symbol, c in by_symbol(output).items():
        r = c["log_return"]
        ok = ~np.isnan(r)
        np.testing.assert_allclose(c["pnl"][ok], np.cumsum(r[ok]), atol=1e-12, err_msg=symbol)
        pnl = c["pnl"][ok]
        np.testing.assert_allclose(c["drawdown"][ok], pnl - np.maximum.accumulate(pnl),
                                   atol=1e-12, err_msg=symbol)


def test_cvar_is_never_below_var(output: pa.Table) -> None:
    var = output.column("var").to_numpy(zero_copy_only=False)
    cvar = output.column("cvar").to_numpy(zero_copy_only=False)
    ok = ~np.isnan(var)
    assert ok.sum() > 0.9 * output.num_rows
    assert (cvar[ok] >= var[ok] - 1e-15).all()


def test_the_kill_switch_is_the_limit_rule(output: pa.Table) -> None:
    def col(name: str) -> np.ndarray:
        return output.column(name).to_numpy(zero_copy_only=False)

    with np.errstate(invalid="ignore"):
        expected = (col("cvar") > 0.002) | (col("drawdown") < -0.05) | (col("cusum_alarm") == 1)
        breach = col("var") > 0.0006
    np.testing.assert_array_equal(col("kill_switch"), expected.astype(np.int8))
    np.testing.assert_array_equal(col("var_breach"), breach.astype(np.int8))
    kills = int(col("kill_switch").sum())
    assert 0 < kills < output.num_rows // 10  # it trips in the stressed spell, not always
    assert col("cusum_alarm").sum() > 0


def test_the_job_is_in_the_cookbook() -> None:
    page = ROOT / "docs" / "cookbook" / "portfolio-risk.md"
    assert "jobs/examples/portfolio_risk.yaml" in page.read_text()
