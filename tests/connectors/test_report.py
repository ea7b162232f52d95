"""The research report sink: incremental statistics and correlations equal pandas' answers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from tests.report_html import plots
from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink, pairwise_corr
from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource

QUIET = RunContext(job_name="report-test", quiet=True)


def feed(sink: ResearchReportSink, table: pa.Table, sizes: list[int]) -> None:
    """Feed ``table`` in batches of the given sizes, cycling through them."""
    sink.open(table.schema)
    offset, i = 0, 0
    while offset < table.num_rows:
        n = sizes[i % len(sizes)]
        for batch in table.slice(offset, n).to_batches():
            sink.write(batch)
        offset += n
        i += 1


def features(rows: int, seed: int = 4) -> pd.DataFrame:
    """Simulated ticks plus the columns the report reads, with NaN, nulls and alarms."""
    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=6, seed=seed),
                          QUIET)
    df = pa.Table.from_batches(list(src.batches())).to_pandas()
    rng = np.random.default_rng(seed)
    df["log_return"] = np.log(df.price).groupby(df.symbol).diff()
    rsi = rng.uniform(0, 100, len(df))
    rsi[df.groupby("symbol").cumcount().to_numpy() < 14] = np.nan
    df["rsi"] = rsi
    imb = (df.best_bid_size - df.best_ask_size) / (df.best_bid_size + df.best_ask_size)
    df["l1_imbalance"] = imb.mask(rng.random(len(df)) < 0.01)
    df["cusum_alarm"] = (rng.random(len(df)) < 0.002).astype(np.int8)
    return df


def to_arrow(df: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(df, preserve_index=False)
    # some imbalance values are null (not NaN) in Arrow
    imb = pa.array(df.l1_imbalance.to_numpy(), mask=df.l1_imbalance.isna().to_numpy()
                   & (np.arange(len(df)) % 2 == 0))
    idx = table.schema.get_field_index("l1_imbalance")
    return table.set_column(idx, "l1_imbalance", imb).replace_schema_metadata(None)


def pandas_stats(df: pd.DataFrame, returns: str = "log_return") -> pd.DataFrame:
    return df.groupby("symbol").agg(
        observations=("price", "size"), mean_return=(returns, "mean"),
        volatility=(returns, "std"), mean_rsi=("rsi", "mean"),
        mean_imbalance=("l1_imbalance", "mean"), regime_changes=("cusum_alarm", "sum"))


def pandas_grid(df: pd.DataFrame, grid: str) -> pd.DataFrame:
    """Last price per grid bucket on the common grid, carried forward."""
    cols = {}
    for sym, g in df.groupby("symbol"):
        cols[sym] = g.set_index("timestamp").price.resample(grid).last()
    prices = pd.concat(cols, axis=1)
    full = pd.date_range(prices.index.min(), prices.index.max(), freq=grid)
    return prices.reindex(full).ffill()


def pandas_corr(df: pd.DataFrame, grid: str) -> pd.DataFrame:
    """The definition: grid prices, log returns, pairwise-complete Pearson correlation."""
    return np.log(pandas_grid(df, grid)).diff().corr()


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return features(120_000)


def test_stats_and_correlations_equal_pandas(data: pd.DataFrame) -> None:
    sink = ResearchReportSink(ResearchReportConfig(kind="report"), QUIET)
    table = to_arrow(data)
    half = table.num_rows // 2
    feed(sink, table.slice(0, half), [7_777, 1, 30_000, 123])
    early = sink.results()  # asking midway must not disturb the accumulation
    assert early["rows"] == half
    feed(sink, table.slice(half), [5_000, 17, 40_000])
    res = sink.results()
    want = pandas_stats(data)
    assert res["symbols"] == list(want.index)
    assert res["rows"] == len(data)
    for sym in want.index:
        got = res["stats"][sym]
        assert got["observations"] == want.loc[sym, "observations"]
        assert got["regime_changes"] == want.loc[sym, "regime_changes"]
        for stat in ("mean_return", "volatility", "mean_rsi", "mean_imbalance"):
            assert got[stat] == pytest.approx(want.loc[sym, stat], rel=1e-9, abs=1e-15), stat
    expected = pandas_corr(data, "1s")
    assert list(expected.columns) == res["symbols"]
    np.testing.assert_allclose(res["correlation"], expected.to_numpy(), rtol=1e-9, atol=1e-12)
    off = res["correlation"][~np.eye(6, dtype=bool)]
    assert (off > 0).all()
    assert res["start"] == data.timestamp.iloc[0].to_pydatetime()


def test_correlation_on_a_constructed_example() -> None:
    """Irregular ticks, several per bucket, empty buckets, a late starter, a flat symbol."""
    t0 = pd.Timestamp("2026-03-01T09:00:00Z")
    rng = np.random.default_rng(0)
    rows = []
    for sym, start, n in [("AAA", 0.0, 400), ("BBB", 0.2, 300), ("CCC", 15.5, 150),
                          ("DDD", 3.0, 50)]:
        times = np.sort(start + rng.uniform(0, 60, n))
        base = rng.normal(0, 0.0005, n).cumsum()
        common = np.sin(times / 3.0) * 0.01
        price = 100 * np.exp(base + common) if sym != "DDD" else np.full(n, 42.0)
        rows += [(t0 + pd.Timedelta(seconds=float(t)), sym, float(p))
                 for t, p in zip(times, price, strict=True)]
    df = pd.DataFrame(rows, columns=["timestamp", "symbol", "price"]).sort_values(
        "timestamp", kind="stable").reset_index(drop=True)
    df["timestamp"] = df.timestamp.astype("datetime64[us, UTC]")
    df["ret"] = np.log(df.price).groupby(df.symbol).diff()
    df["rsi"] = 50.0
    df["l1_imbalance"] = 0.0
    df["cusum_alarm"] = 0
    for grid in ("1s", "2500ms"):
        cfg = ResearchReportConfig(kind="report", grid=grid, returns="ret")
        sink = ResearchReportSink(cfg, QUIET)
        feed(sink, pa.Table.from_pandas(df, preserve_index=False), [37, 5, 200])
        res = sink.results()
        expected = pandas_corr(df, grid)
        assert res["symbols"] == ["AAA", "BBB", "CCC", "DDD"]
        assert res["grid_points"] == len(pandas_grid(df, grid))  # the same common grid
        assert (expected.to_numpy()[:3, :3] > 0.3).all()
        np.testing.assert_allclose(res["correlation"], expected.to_numpy(), rtol=1e-10,
                                   atol=1e-13)
        assert np.isnan(res["correlation"][3]).all()  # a flat price has no correlation
        assert res["stats"]["AAA"]["volatility"] == pytest.approx(
            df[df.symbol == "AAA"].ret.std(), rel=1e-10)


def test_pairwise_corr_matches_pandas_with_gaps() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 5)) + rng.normal(size=(500, 1))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:100, 4] = np.nan
    x[:3, 2] = np.nan
    np.testing.assert_allclose(pairwise_corr(x), pd.DataFrame(x).corr().to_numpy(),
                               rtol=1e-10, atol=1e-13)
    # a large offset and a tiny scale: accurate to an extended-precision two-pass answer
    x[:, 3] = x[:, 3] * 1e-6 + 1e3
    both = np.isfinite(x[:, 0]) & np.isfinite(x[:, 3])
    a, b = (x[both, i].astype(np.longdouble) for i in (0, 3))
    a, b = a - a.mean(), b - b.mean()
    exact = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    assert pairwise_corr(x)[0, 3] == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("missing", [0.0, 0.02, 0.7, 0.995])
def test_pairwise_corr_equals_pandas_for_few_and_many_gaps(missing: float) -> None:
    """Columns with few gaps (sums less the gap rows) and with mostly gaps (sums over the
    valid rows) both give pandas' answer; so do a full, a constant and an empty column."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3_000, 6)) + rng.normal(size=(3_000, 1))
    x[rng.random(3_000) < missing, 1] = np.nan
    x[rng.random(3_000) < missing / 2, 2] = np.nan
    x[:, 3] = 2.5
    x[:, 5] = np.nan
    expected = pd.DataFrame(x).corr().to_numpy()
    got = pairwise_corr(x)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_writes_interactive_html(data: pd.DataFrame, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "report.html"
    ctx = RunContext(job_name="crypto-research", job_sha256="ab" * 32, tickflow_version="0.1.0")
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=str(path)), ctx)
    feed(sink, to_arrow(data.iloc[:30_000]), [10_000])
    summary = sink.close()
    assert summary is not None and summary.startswith("report: 6 symbols, 30,000 rows")
    assert str(path) in summary
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "return_correlation" in plots(html)
    assert "BTC-USD" in html and "ab" * 32 in html
    assert not list(path.parent.glob("*.png"))  # the HTML needs no file beside it
    printed = capsys.readouterr().out
    assert "per-symbol statistics" in printed and "log-return correlations" in printed


def test_writes_markdown_quietly(data: pd.DataFrame, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.md"
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=str(path)), QUIET)
    feed(sink, to_arrow(data.iloc[:20_000]), [20_000])
    sink.close()
    text = path.read_text()
    assert "| BTC-USD |" in text and "![correlation heatmap](report_correlation.png)" in text
    assert (tmp_path / "report_correlation.png").exists()
    assert capsys.readouterr().out == ""


def test_a_prepared_close_writes_the_same_page_and_nothing_before_close(
        data: pd.DataFrame, tmp_path: Path) -> None:
    """``prepare_close`` (run on the sink's writer thread after its last batch) computes the
    statistics and renders the page, and writes nothing; a batch written after it is counted."""
    table = to_arrow(data.iloc[:30_000])
    pages = {}
    for name in ("plain", "prepared", "written_after"):
        path = tmp_path / name / "report.html"
        sink = ResearchReportSink(ResearchReportConfig(kind="report", path=str(path)), QUIET)
        feed(sink, table.slice(0, 20_000) if name == "written_after" else table, [10_000])
        if name != "plain":
            sink.prepare_close()
            assert not path.parent.exists()  # nothing written yet
        if name == "written_after":
            for batch in table.slice(20_000).to_batches():
                sink.write(batch)
        summary = sink.close()
        assert summary is not None and "30,000 rows" in summary
        pages[name] = re.sub(rb'"p\d+"', b'"p"', path.read_bytes())  # Bokeh's ids count on
    assert pages["prepared"] == pages["plain"] == pages["written_after"]
    md = tmp_path / "md" / "report.md"
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=str(md)), QUIET)
    feed(sink, table, [10_000])
    sink.prepare_close()  # a Markdown report's heatmap is a file: left to close
    assert not md.parent.exists()
    sink.close()
    assert md.exists() and (md.parent / "report_correlation.png").exists()


def test_columns_config_and_empty_run(tmp_path: Path) -> None:
    cfg = ResearchReportConfig(kind="report", returns="r", alarm="regime", price="mid")
    sink = ResearchReportSink(cfg, QUIET)
    assert sink.required_columns() == ["symbol", "timestamp"]  # the rest is optional
    assert ResearchReportSink(ResearchReportConfig(kind="report", path=None),
                              QUIET).close() == "report: 0 symbols, 0 rows, 0 features"
    with pytest.raises(ValidationError, match=r"must end in \.html or \.md"):
        ResearchReportConfig(kind="report", path=str(tmp_path / "r.txt"))
    with pytest.raises(ValidationError, match="duration"):
        ResearchReportConfig(kind="report", grid="fast")
    with pytest.raises(ValidationError):
        ResearchReportConfig(kind="report", colour="red")
