"""Backtests of any graph: a strategy on 1-minute bars and a multi-timeframe strategy.

Both were refused before the one runtime (a backtest ran on one stream of ticks only). The fill
simulator is now a sink of the job's main stream, so what it sees must be exactly what the same
graph writes in research mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.plan import ENTRY_LONG, build_plan
from tickflow.engine.backtest.run import load_backtest_job, run_backtest
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.streams import collect
from tickflow.engine.loader import load_job

BARS = """\
name: bars-bt
mode: backtest
sources:
  - {{id: ticks, kind: parquet, path: {ticks}}}
steps:
  - {{id: bars, operator: resample_ohlc, params: {{interval: 1m}}}}
  - {{id: ema_fast, kernel: ema, input: close, params: {{span: 10}}, output: ema_10}}
  - {{id: ema_slow, kernel: ema, input: close, params: {{span: 30}}, output: ema_30}}
{extra}strategy:
  long:
    entry: {entry}
    exit: crosses_below(ema_10, ema_30)
  sizing: {{method: fixed_notional, notional: 1000}}
  grid: 1m
  output_dir: {out}
executor: {{kind: local, workers: 2}}
"""

HOURLY = """\
  - {id: bars_1h, operator: resample_ohlc, from: ticks, params: {interval: 1h},
     outputs: [bar_start_1h, bar_end_1h, open_1h, high_1h, low_1h, close_1h, volume_1h,
               vwap_1h, trades_1h]}
  - {id: trend, operator: asof_join, from: bars, params: {right: bars_1h}}
"""


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bars_bt") / "ticks.parquet"
    # 4 symbols over about 5.5 hours: ~330 minute bars and 5 closed hours per symbol
    write_simulated_parquet(path, rows=80_000, symbols=4, seed=3, ticks_per_second=4)
    return path


def _job(tmp_path: Path, ticks: Path, extra: str = "",
         entry: str = "crosses_above(ema_10, ema_30)", name: str = "job") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BARS.format(ticks=ticks, out=tmp_path / "out", extra=extra, entry=entry))
    return path


def _main_stream_sorted(job_path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """The job's main stream as research computes it, in time order (as the simulator reads)."""
    job = compile_job(load_job(str(job_path)))
    table = collect(job, workers=1)[job.main_stream]
    ts = table.column("timestamp").cast("int64").to_numpy()
    order = np.argsort(ts, kind="stable")
    return {c: table.column(c).to_numpy(zero_copy_only=False)[order].astype(float)
            for c in columns}


def test_a_strategy_on_one_minute_bars_runs_from_the_command_line(
        tmp_path: Path, ticks: Path) -> None:
    job_path = _job(tmp_path, ticks)
    assert main(["validate", str(job_path)]) == 0
    assert main([str(job_path), "--quiet"]) == 0
    trades = pq.read_table(tmp_path / "out" / "bars-bt_trades.parquet")
    assert trades.num_rows > 0

    bt = run_backtest(load_backtest_job(str(job_path)), write=False)
    expected = _main_stream_sorted(job_path, ["close", "ema_10", "ema_30"])
    # one simulator row per bar (not per tick), priced at the bar's close
    assert 4 * 300 < len(bt.data) == len(expected["close"]) < 80_000
    np.testing.assert_array_equal(bt.data.columns["price"], expected["close"])
    np.testing.assert_array_equal(bt.data.columns["ema_10"], expected["ema_10"])
    assert bt.result.counters["trade_count"] > 0


def test_a_multi_timeframe_strategy_filters_minute_crosses_by_the_hourly_trend(
        tmp_path: Path, ticks: Path) -> None:
    entry = "crosses_above(ema_10, ema_30) and close_1h > open_1h"
    job_path = _job(tmp_path, ticks, extra=HOURLY, entry=entry)
    job = load_backtest_job(str(job_path))
    assert job.main_stream == "trend"
    bt = run_backtest(job, write=False)
    expected = _main_stream_sorted(job_path, ["close", "close_1h", "open_1h"])
    np.testing.assert_array_equal(bt.data.columns["price"], expected["close"])
    np.testing.assert_array_equal(bt.data.columns["close_1h"], expected["close_1h"])

    assert job.spec.strategy is not None
    codes = build_plan(job.spec.strategy).signal_codes(bt.data.columns, bt.data.sym)
    entries = (codes & ENTRY_LONG) != 0
    assert entries.any()
    cols = bt.data.columns
    assert (cols["close_1h"][entries] > cols["open_1h"][entries]).all()
    # the hourly filter removes some of the plain minute crosses
    plain = _job(tmp_path, ticks, extra=HOURLY, name="plain")
    plain_bt = run_backtest(load_backtest_job(str(plain)), write=False)
    plain_codes = build_plan(plain_bt.strategy).signal_codes(plain_bt.data.columns,
                                                               plain_bt.data.sym)
    assert entries.sum() < ((plain_codes & ENTRY_LONG) != 0).sum()
    assert bt.result.counters["trade_count"] > 0
