"""Whole jobs with streams: jobs/examples/multi_timeframe.yaml and a two-exchange as-of join,
run by run-job, checked against pandas; streaming (small morsels, several workers) and batch (one
morsel) runs give the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.operators.test_bars import resample_reference
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.streams import collect
from tickflow.engine.loader import load_job
from tickflow.engine.operators.testing import assert_tables_equal

JOB = ROOT / "jobs" / "examples" / "multi_timeframe.yaml"
FRAMES = {"1m": 60, "1h": 3600, "1d": 86400}


@pytest.fixture(scope="module")
def slow_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3.5 simulated days, so that minute, hour and day bars all close."""
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=20_000, symbols=3, seed=5, ticks_per_second=0.07)
    return path


def test_multi_timeframe_job_equals_pandas_resample_and_merge_asof(
        slow_ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(slow_ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    monkeypatch.setenv("WORKERS", "2")
    assert main([str(JOB), "--quiet"]) == 0
    out = pq.read_table(tmp_path / "multi_timeframe.parquet").to_pandas()
    ticks = pq.read_table(slow_ticks)
    assert len(out) == ticks.num_rows
    expected = ticks.to_pandas()
    for frame, seconds in FRAMES.items():
        bars = resample_reference(ticks, seconds * 1_000_000).drop(columns="order")
        bars["timestamp"] = pd.to_datetime(bars["bar_end"], unit="us", utc=True)
        for col in ("bar_start", "bar_end"):
            bars[col] = pd.to_datetime(bars[col], unit="us", utc=True)
        bars = bars.rename(columns={c: f"{c}_{frame}" for c in bars.columns
                                    if c not in ("timestamp", "symbol")})
        expected = pd.merge_asof(expected, bars, on="timestamp", by="symbol")
        joined = out[f"close_{frame}"].notna()
        assert joined.any() and (~joined).any()  # the first interval has no closed bar yet
        # no look-ahead: every attached bar had closed by the tick's time
        assert (out.loc[joined, f"bar_end_{frame}"] <= out.loc[joined, "timestamp"]).all()
    for col in expected.columns:
        a, b = out[col], expected[col]
        if a.dtype.kind in "fiu":
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-12,
                                       err_msg=col)
        else:
            assert a.astype(object).where(a.notna(), None).tolist() == \
                b.astype(object).where(b.notna(), None).tolist(), col
    bars_1m = pq.read_table(tmp_path / "bars_1m.parquet")
    assert bars_1m.schema.names[:3] == ["timestamp", "symbol", "bar_start_1m"]
    assert {"rsi", "close_1m_zscore", "trend_aligned"} <= set(out.columns)


def test_streaming_and_batch_runs_give_the_same_rows_in_every_stream(slow_ticks: Path,
                                                                     tmp_path: Path) -> None:
    env = {"TICKS": str(slow_ticks), "OUT_DIR": str(tmp_path)}
    batch = collect(compile_job(load_job(JOB, env=env)), workers=1, morsel_rows=1_000_000)
    stream = collect(compile_job(load_job(JOB, env=env)), workers=2, morsel_rows=997)
    assert set(batch) == {"ticks", "bars_1m", "bars_1h", "bars_1d", "with_1m", "with_1h",
                          "with_1d"}
    for name in batch:
        assert_tables_equal(stream[name], batch[name])
    assert batch["bars_1d"].num_rows >= 3 * 3


TWO_VENUES = """
name: two-venues
mode: arbitrage
sources:
  - id: coinbase
    kind: parquet
    path: {coinbase}
  - id: kraken
    kind: parquet
    path: {kraken}
steps:
  - id: aligned
    operator: asof_join
    params: {{left: coinbase, right: kraken, direction: nearest, tolerance: 2s,
             suffixes: ["", "_kraken"]}}
  - id: spread
    kernel: sma
    input: price_kraken
    params: {{window: 5}}
    output: kraken_price_sma
  - id: kraken_returns
    kernel: log_returns
    from: kraken
sinks:
  - kind: parquet
    path: {out}/aligned.parquet
  - kind: parquet
    from: kraken
    path: {out}/kraken.parquet
executor: {{morsel_rows: 1500, workers: 2}}
"""


def test_two_exchange_captures_are_merged_by_time_and_joined_as_pandas_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cb, kr = tmp_path / "coinbase.parquet", tmp_path / "kraken.parquet"
    write_simulated_parquet(cb, rows=12_000, symbols=4, seed=1, exchange="coinbase",
                            ticks_per_second=50)
    write_simulated_parquet(kr, rows=5_000, symbols=4, seed=2, exchange="kraken",
                            ticks_per_second=20)
    job = tmp_path / "two.yaml"
    job.write_text(TWO_VENUES.format(coinbase=cb, kraken=kr, out=tmp_path / "out"))
    assert main(["validate", str(job)]) == 0
    assert main(["graph", str(job)]) == 0
    graph = capsys.readouterr().out
    assert "[operator] aligned (asof_join)  <- coinbase, kraken" in graph
    assert "[kernel] kraken_returns (log_returns)  <- kraken" in graph
    assert main([str(job), "--quiet"]) == 0
    got = pq.read_table(tmp_path / "out" / "aligned.parquet").to_pandas()
    # the right side as the join saw it: the kraken ticks with kraken_returns' column
    kraken = pq.read_table(tmp_path / "out" / "kraken.parquet")
    assert kraken.drop_columns(["log_return"]).equals(pq.read_table(kr))
    left, right = pq.read_table(cb).to_pandas(), kraken.to_pandas()
    expected = pd.merge_asof(left, right, on="timestamp", by="symbol", direction="nearest",
                             tolerance=pd.Timedelta("2s"), suffixes=("", "_kraken"))
    assert list(got.columns) == [*expected.columns, "kraken_price_sma"]
    for col in expected.columns:
        a, b = got[col], expected[col]
        if a.dtype.kind in "fiu":
            np.testing.assert_array_equal(a.to_numpy(float), b.to_numpy(float), err_msg=col)
        else:
            assert a.astype(object).where(a.notna(), None).tolist() == \
                b.astype(object).where(b.notna(), None).tolist(), col
    assert got["price_kraken"].notna().mean() > 0.5
    assert kraken.num_rows == 5_000 and "log_return" in kraken.schema.names


def test_an_out_of_order_capture_stops_the_run_with_the_step_and_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cb, kr = tmp_path / "coinbase.parquet", tmp_path / "kraken.parquet"
    write_simulated_parquet(cb, rows=2_000, symbols=2, seed=1)
    table = pq.read_table(cb)
    pq.write_table(pa.concat_tables([table.slice(0, 1500), table.slice(0, 10)]), kr)
    job = tmp_path / "two.yaml"
    job.write_text(TWO_VENUES.format(coinbase=cb, kraken=kr, out=tmp_path / "out"))
    assert main([str(job), "--quiet"]) == 1
    err = capsys.readouterr().err
    # the driver's quality stage stops it before the join, naming the source, key and row
    first_key = table.column("symbol")[0].as_py()
    assert f"source 'kraken', key {first_key!r}, row 1500: timestamp" in err
    assert "earlier than the previous row of this key" in err
    assert "Traceback" not in err


def test_executors_without_streams_refuse_a_stream_job_instead_of_misrunning_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (Dask runs stream jobs now: tests/runtime/test_dask_graphs.py)
    job = tmp_path / "job.yaml"
    job.write_text("name: j\nmode: live\nsources:\n  - kind: simulator\n    rows: 100\n"
                   "steps:\n  - operator: filter\n    params: {rule: price > 0}\n")
    assert main([str(job), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{job}: mode: jobs with several streams" in err
