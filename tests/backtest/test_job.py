"""Backtest jobs end to end: run-job on simulated ticks, outputs, research reuse, no look-ahead."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tickflow.engine.backtest.run as bt_run
from tests.conftest import ROOT
from tests.report_html import external_references, plots
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.run import load_backtest_job, run_backtest
from tickflow.engine.backtest.sweep import overrides_to_sets
from tickflow.engine.cli import main

JOB = str(ROOT / "jobs" / "backtest.yaml")


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=60_000, symbols=5, seed=3)
    return path


def test_run_job_on_the_default_data_writes_every_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`run-job jobs/backtest.yaml` with no data yet: ticks are simulated, outputs written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKS", raising=False)
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(bt_run, "DEFAULT_TICK_ROWS", 40_000)
    assert main([JOB, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "data" / "sim_ticks.parquet").is_file()
    assert "simulating 40,000 ticks" in out
    assert "total return" in out and "buy and hold" in out and "per symbol" in out
    trades = pq.read_table(tmp_path / "out" / "backtest-meanrev_trades.parquet")
    equity = pq.read_table(tmp_path / "out" / "backtest-meanrev_equity.parquet")
    assert trades.num_rows > 10
    assert {"symbol", "side", "entry_signal_time", "entry_time", "entry_price", "exit_time",
            "exit_price", "quantity", "fees", "pnl", "return", "reason"} <= set(trades.schema.names)
    t = trades.to_pydict()
    assert all(e > s for e, s in zip(t["entry_time"], t["entry_signal_time"], strict=True))
    assert set(t["side"]) == {"long"}
    eq = equity.column("equity").to_numpy()
    assert eq[0] == pytest.approx(100_000)
    # every position is closed at the end: the equity change is the sum of trade P&L
    assert eq[-1] - eq[0] == pytest.approx(sum(t["pnl"]), rel=1e-9, abs=1e-6)
    stamps = equity.column("timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(stamps) > 0)
    meta = pq.read_metadata(tmp_path / "out" / "backtest-meanrev_trades.parquet").metadata
    assert meta[b"tickflow.job_name"] == b"backtest-meanrev"
    html = (tmp_path / "out" / "backtest-meanrev_report.html").read_text()
    assert {"equity", "trades_on_price", "trade_returns"} <= set(plots(html))
    assert not external_references(html)  # self-contained
    for label in ("Sharpe", "Sortino", "Calmar", "max drawdown", "profit factor", "turnover",
                  "exposure", "fees paid", "buy and hold"):
        assert label in html


def test_a_missing_tick_file_says_how_to_make_it(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(tmp_path / "nope.parquet"))
    assert main([JOB]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "run-job simulate -o" in err and "Traceback" not in err


RESEARCH = """\
name: slim-research
mode: research
sources:
  - kind: parquet
    path: {ticks}
steps:                      # the two core features the mean reversion rules read
  - kernel: rolling_zscore
    params: {{window: 100}}
  - kernel: rsi
    params: {{period: 14}}
sinks:
  - kind: parquet
    path: {out}
executor: {{workers: 1}}
"""


def test_research_output_is_reused_only_when_computed_the_same_way(
        ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    research = tmp_path / "research_features.parquet"
    job = tmp_path / "research.yaml"
    job.write_text(RESEARCH.format(ticks=ticks, out=research))
    assert main([str(job), "-q"]) == 0
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    raw = run_backtest(load_backtest_job(JOB), write=False)
    reused = run_backtest(load_backtest_job(JOB, parquet=str(research)),
                          parquet=str(research), write=False)
    assert reused.data.origin.startswith("features reused from")
    assert "exactly as this job does" in reused.data.origin
    for name in raw.result.trades:
        np.testing.assert_array_equal(raw.result.trades[name], reused.result.trades[name])
    # a different z-score window: the file's zscore column does not fit, so it is recomputed
    _, window_50 = overrides_to_sets(JOB, {"steps.rolling_zscore.params.window": 50})
    other = run_backtest(load_backtest_job(JOB, window_50, parquet=str(research)),
                         parquet=str(research), write=False)
    assert other.data.origin.startswith("features computed")
    assert any("'zscore' was computed differently" in n for n in other.data.notes)
    assert other.result.counters["trade_count"] != raw.result.counters["trade_count"]
    # the research job changed after it wrote the file: no reuse
    job.write_text(job.read_text().replace("period: 14", "period: 14 "))
    changed = run_backtest(load_backtest_job(JOB, parquet=str(research)),
                           parquet=str(research), write=False)
    assert any("changed since it wrote the file" in n for n in changed.data.notes)
    # the CLI flag does the same
    job.write_text(RESEARCH.format(ticks=ticks, out=research))
    capsys.readouterr()
    assert main([JOB, "--parquet", str(research), "--workers", "1"]) == 0
    assert "features reused from" in capsys.readouterr().out


def test_changing_future_ticks_does_not_change_earlier_trades(ticks: Path,
                                                              tmp_path: Path) -> None:
    """Features, rules and fills together: nothing before tick k depends on ticks from k on."""
    table = pq.read_table(ticks)
    k = table.num_rows // 2
    shocked = table.slice(k)
    cols = {n: shocked.column(n) for n in shocked.schema.names}
    for n in ("price", "best_bid", "best_ask"):
        cols[n] = pa.array(shocked.column(n).to_numpy() * 1.3)  # a crash or rally later on
    future = pa.concat_tables([table.slice(0, k), pa.table(cols, schema=table.schema)])
    other = tmp_path / "future.parquet"
    pq.write_table(future, other)
    a = run_backtest(load_backtest_job(JOB, parquet=str(ticks)), parquet=str(ticks),
                     write=False)
    b = run_backtest(load_backtest_job(JOB, parquet=str(other)), parquet=str(other),
                     write=False)
    cut = table.column("timestamp").cast(pa.int64()).to_numpy()[k]
    done_a = a.result.trades["exit_ts"] < cut
    done_b = b.result.trades["exit_ts"] < cut
    assert done_a.sum() > 5
    for name in a.result.trades:
        np.testing.assert_array_equal(a.result.trades[name][done_a],
                                      b.result.trades[name][done_b])
    assert b.result.counters["trade_count"] != a.result.counters["trade_count"] or \
        not np.array_equal(a.result.trades["pnl"], b.result.trades["pnl"])


BAD = """\
name: bad-backtest
mode: backtest
sources:
  - kind: parquet
    path: {ticks}
include:
  - {core}
strategy:
  params: {{entry_z: 2.0}}
  long:
    entry: zscroe < -{{entry_z}}
    exit: zscore > {{exit_z}}
  sizing: {{method: vol_target, vol_column: riskmetrics_volatility}}
sweep:
  parameters:
    entry_zz: [1, 2]
    steps.nope.params.window: [5]
"""


def test_validate_locates_every_strategy_problem(ticks: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "bad.yaml"
    job.write_text(BAD.format(ticks=ticks, core=ROOT / "jobs" / "features" / "core.yaml"))
    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1] == "5 problems"
    assert (f"{job}:11:12: strategy.long.entry: unknown column 'zscroe' in rule "
            f"'zscroe < -(2.0)'; did you mean 'zscore'") in err
    assert f"{job}:12:11: strategy.long.exit: placeholder {{exit_z}} has no value" in err
    assert "strategy.sizing.vol_column: vol_target sizing reads column " \
           "'riskmetrics_volatility'" in err and "did you mean 'riskmetrics_vol'" in err
    assert f"{job}:16:5: sweep.parameters.entry_zz: 'entry_zz' is not a key of " \
           f"strategy.params; did you mean 'entry_z'" in err
    assert "sweep.parameters.steps.nope.params.window: no step with id 'nope'" in err
    assert "Traceback" not in err


def test_a_backtest_needs_a_strategy(ticks: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "none.yaml"
    job.write_text(f"name: x\nmode: backtest\nsources:\n  - kind: parquet\n    path: {ticks}\n")
    assert main(["validate", str(job)]) == 2
    assert f"{job}:2:7: mode: a backtest job needs a `strategy:` block" in \
        capsys.readouterr().err


def test_shipped_backtest_jobs_run(ticks: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    for name in ("backtest_trend.yaml", "backtest_breakout.yaml"):
        job = load_backtest_job(str(ROOT / "jobs" / name))
        res = run_backtest(job, write=False)
        assert res.result.counters["trade_count"] > 0, name
        sides = set(res.result.trades["side"].tolist())
        assert sides == {-1, 1}, name                     # both are long/short strategies
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_backtest_flags_on_a_research_job_are_refused_clearly(
        ticks: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    assert main([str(ROOT / "jobs" / "research.yaml"), "--sweep"]) == 2
    err = capsys.readouterr().err
    assert "research.yaml:5:7: mode: --parquet and --sweep run backtests; this is a research " \
           "job without a `strategy:` block" in err
