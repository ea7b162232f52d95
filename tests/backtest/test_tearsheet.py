"""The backtest tearsheet: sections, the data in each plot, offline, and sane metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import ROOT
from tests.report_html import external_references, plots, sections, source_named, sources
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.metrics import equity_metrics, trade_metrics
from tickflow.engine.backtest.report import backtest_html, print_backtest
from tickflow.engine.backtest.run import load_backtest_job, run_backtest
from tickflow.engine.backtest.summary import summarise
from tickflow.engine.backtest.tearsheet import MAX_MARKERS, SECTIONS, tearsheet_html
from tickflow.engine.backtest.tearsheet_data import TearsheetData, drawdown_periods

HOUR_US = 3_600_000_000


def metrics_of(ts: np.ndarray, equity: np.ndarray, pnl: np.ndarray) -> dict[str, float]:
    m = equity_metrics(ts, equity)
    m.update(trade_metrics(pnl, np.full(len(pnl), 1_000.0)))
    m["elapsed_s"] = (ts[-1] - ts[0]) / 1e6
    return m


def all_text(summary) -> str:
    return " ".join(" ".join(r) for r in summary.rows) + " ".join(summary.warnings)


@pytest.mark.parametrize(("name", "hours", "equity", "pnl"), [
    ("short", 2.8, np.linspace(100.0, 100.5, 50) ** 3 / 1e4, np.array([5.0, -2.0])),
    ("ten minutes", 1 / 6, np.linspace(100.0, 60.0, 20), np.array([-40.0])),
    ("flat", 24 * 40, np.full(100, 100.0), np.zeros(0)),
    ("single trade", 24 * 40, np.r_[np.full(50, 100.0), np.full(50, 103.0)],
     np.array([3.0])),
])
def test_no_absurd_figure_on_short_flat_and_single_trade_samples(name, hours, equity, pnl):
    ts = np.linspace(0, hours * HOUR_US, len(equity)).astype(np.int64) + 1_700_000_000_000_000
    summary = summarise(metrics_of(ts, equity, pnl), metrics_of(ts, equity, pnl))
    text = all_text(summary)
    assert not re.search(r"\b(inf|nan)\b", text, re.I), text
    assert "e+" not in text  # no 1.44e+42x
    rows = {label: value for label, value, _ in summary.rows}
    if hours < 24 * 30:
        span = "2.8 h" if name == "short" else "10.0 min"
        for label in ("annualised return", "Sharpe (ann.)", "volatility (ann.)", "Calmar"):
            assert rows[label] == f"n/a (sample {span})"
        assert rows["Sharpe (period)"] != "n/a" and "total return" in rows
        assert any("less than 30 days" in w for w in summary.warnings)
    if name == "flat":
        assert rows["Sharpe (ann.)"] == "n/a (flat equity)"
        assert rows["win rate"] == "n/a (no trades)"
        assert any("never changed" in w for w in summary.warnings)
    if name == "single trade":
        assert rows["profit factor"] == "n/a (no losing trades)"
        assert rows["win rate"] == "100.00%"
        assert any("Only 1 trade closed" in w for w in summary.warnings)


def synthetic(days: float = 40.0, dense: int = 1_200) -> TearsheetData:
    """Two symbols on an hourly grid; one trades densely (aggregated), one sparsely."""
    rng = np.random.default_rng(5)
    n = int(days * 24)
    ts = 1_700_000_000_000_000 + np.arange(n, dtype=np.int64) * HOUR_US
    equity = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    bench = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    trades: dict[str, list] = {k: [] for k in ("symbol", "side", "entry_ts", "exit_ts",
                                               "entry_price", "exit_price", "quantity",
                                               "fees", "pnl", "return", "reason", "mae",
                                               "mfe", "spread_cost", "slippage_cost")}
    for sym, count in (("AAA", dense), ("BBB", 12)):
        starts = np.sort(rng.choice(np.arange(ts[0], ts[-1] - HOUR_US, 60_000_000), count,
                                    replace=False))
        for s in starts:
            px = 100 + rng.normal()
            ret = rng.normal(0, 0.01)
            for k, v in (("symbol", sym), ("side", 1.0), ("entry_ts", s),
                         ("exit_ts", s + 30_000_000), ("entry_price", px),
                         ("exit_price", px * (1 + ret)), ("quantity", 10.0), ("fees", 0.5),
                         ("pnl", 10 * px * ret - 0.5), ("return", ret - 0.0005),
                         ("reason", "signal"), ("mae", -abs(ret)), ("mfe", abs(ret)),
                         ("spread_cost", 0.2), ("slippage_cost", 0.0)):
                trades[k].append(v)
    arrays = {k: np.array(v, dtype=object if k in ("symbol", "reason") else None)
              for k, v in trades.items()}
    prices = {s: (ts, 100 + np.cumsum(rng.normal(0, 0.1, n))) for s in ("AAA", "BBB")}
    m = metrics_of(ts, equity, arrays["pnl"])
    return TearsheetData(title="synthetic: backtest report", ts_us=ts, equity=equity,
                         metrics=m, trades=arrays, benchmark_equity=bench,
                         benchmark_metrics=metrics_of(ts, bench, np.array([1.0])),
                         per_symbol={"AAA": m, "BBB": m}, prices=prices, grid="1h")


def test_tearsheet_sections_plots_and_their_data():
    d = synthetic()
    page = tearsheet_html(d)
    assert not external_references(page)
    assert sections(page) == list(SECTIONS)
    items = plots(page)
    assert set(items) == {"equity", "rolling", "returns_heatmap", "exposure",
                          "trades_on_price", "trade_returns", "mae_mfe", "costs"}
    strategy = next(s["data"] for s in sources(items["equity"]) if s["name"] == "strategy")
    np.testing.assert_allclose(strategy["y"], d.equity)  # 960 points are kept as they are
    assert "buy and hold" in {s["name"] for s in sources(items["equity"])}
    # dense symbol: markers aggregated, every trade counted once
    marks = source_named(items["trades_on_price"], "choice:AAA:marks")
    assert len(marks["x"]) <= MAX_MARKERS // 2 and sum(marks["count"]) == 1_200
    sparse = source_named(items["trades_on_price"], "choice:BBB:marks")
    assert len(sparse["x"]) == 24  # 12 entries and 12 exits
    # 40 days: a daily heatmap whose cells compound to the whole return
    heat = sources(items["returns_heatmap"])[0]["data"]
    total = np.prod(1 + np.asarray(heat["value"]) / 100) - 1
    assert total == pytest.approx(d.equity[-1] / d.equity[0] - 1, rel=1e-9)
    hist = sources(items["trade_returns"])[0]["data"]
    assert int(np.sum(hist["count"])) == 1_212
    assert "annualised return" in page and "n/a (sample" not in page  # 40 days: annualised


def test_worst_drawdowns_are_found_and_ordered():
    ts = np.arange(9, dtype=np.int64) * 1_000_000
    eq = np.array([100, 90, 100, 110, 77, 88, 120, 114, 115.0])
    dd = drawdown_periods(ts, eq, 5)
    assert [round(p["depth"], 4) for p in dd] == [-0.3, -0.1, -0.05]
    assert dd[0]["peak"] == 3_000_000 and dd[0]["trough"] == 4_000_000
    assert dd[0]["recovery"] == 6_000_000 and dd[2]["recovery"] is None


@pytest.fixture(scope="module")
def backtest(tmp_path_factory: pytest.TempPathFactory):
    ticks = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(ticks, rows=40_000, symbols=3, seed=2)
    job = load_backtest_job(str(ROOT / "jobs" / "backtest.yaml"), [], str(ticks))
    return run_backtest(job, str(ticks), 1, write=False)


def test_terminal_and_html_show_the_same_numbers_and_warnings(backtest):
    console = Console(record=True, width=200)
    print_backtest(backtest, console, 1.0)
    terminal = console.export_text()
    page = backtest_html(backtest)
    summary = summarise(backtest.metrics, backtest.benchmark_metrics)
    assert summary.warnings and "less than 30 days" in summary.warnings[0]
    for label, strategy, bench in summary.rows:
        for text in (label, strategy, bench):
            assert text in terminal, text
        assert f"<td>{label}</td><td class=n>{strategy}</td><td class=n>{bench}</td>" in page
    for warning in summary.warnings:
        assert warning[:60] in " ".join(terminal.split())
        assert warning in page
    assert not re.search(r"\b(inf|nan)\b", terminal)
    items = plots(page)
    # the costs plot carries the fee split that sums to the fees paid
    fees = source_named(items["costs"], None)
    assert fees is not None
    assert not external_references(page)


def test_report_modules_do_not_import_bokeh_until_a_report_is_written():
    import subprocess
    import sys

    code = ("import sys; import tickflow.engine.backtest.report, tickflow.connectors.report, "
            "tickflow.connectors.arbitrage_report; print('bokeh' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2]).stdout
    assert out.strip() == "False"
