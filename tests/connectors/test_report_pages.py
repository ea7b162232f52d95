"""Research (any columns) and arbitrage pages: sections, plot data, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.report_html import external_references, plots, sections, source_named
from tickflow.connectors.arbitrage_report import ArbitrageReportConfig, ArbitrageReportSink
from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink

QUIET = RunContext(job_name="pages", quiet=True)


def test_research_report_accepts_any_features(tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 30_000
    a = rng.normal(size=n)
    table = pa.table({
        "timestamp": pa.array(1_700_000_000_000_000 + np.arange(n) * 1000,
                              pa.timestamp("us", tz="UTC")),
        "symbol": np.where(np.arange(n) % 2, "X", "Y"),
        "my_signal": a, "echo": 2 * a + 1, "note": ["text"] * n,  # not numeric: ignored
        "flag": (a > 0).astype(np.int8)})
    path = tmp_path / "r.html"
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=str(path)), QUIET)
    sink.open(table.schema)
    for batch in table.to_batches(max_chunksize=4_096):
        sink.write(batch)
    summary = sink.close()
    assert summary == f"report: 2 symbols, 30,000 rows, 3 features -> {path}"
    res = sink.results()
    assert res["shown_stats"] == ["observations"] and res["correlation"] is None
    assert res["features"]["echo"]["mean"] == np.mean(2 * res["sample"]["my_signal"] + 1)
    page = path.read_text()
    assert not external_references(page)
    assert sections(page) == ["Per-symbol statistics", "Feature statistics",
                              "Correlation of log returns (1s grid)", "Feature correlations",
                              "Feature distributions"]
    items = plots(page)
    corr = [s for s in items["feature_correlation"]["doc"]["roots"]]
    assert corr
    bins = source_named(items["feature_distributions"], "choice:flag:bins")
    assert sum(bins["count"]) == len(res["sample"]["flag"])
    assert {"choice:my_signal:bins", "choice:echo:bins"} <= {
        s for s in page.split('"') if s.startswith("choice:")}


def test_arbitrage_page_has_the_timeline_and_distributions(tmp_path: Path):
    ts = 1_700_000_000_000_000 + np.arange(200, dtype=np.int64) * 100_000
    edge = np.where((np.arange(200) // 20) % 2 == 1, 12.0, -3.0)  # 5 episodes above 10 bps
    table = pa.table({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                      "symbol": ["BTC-USD"] * 200, "exchange": ["a"] * 200,
                      "exchange_b": ["b"] * 200, "net_edge_bps": edge,
                      "is_stale": np.zeros(200, np.int8)})
    cfg = ArbitrageReportConfig(path=str(tmp_path / "arb.csv"), thresholds_bps=[0, 10, 20],
                                plot=False)
    sink = ArbitrageReportSink(cfg, QUIET)
    sink.write(table.to_batches()[0])
    sink.close()
    page = (tmp_path / "arb.html").read_text()
    assert not external_references(page)
    assert sections(page) == ["Episodes above each threshold", "Episode timeline",
                              "Net edge distribution per pair and threshold"]
    items = plots(page)
    timeline = [s for s in items["episode_timeline"]["doc"]["roots"]]
    assert timeline
    from tests.report_html import sources

    bars = sources(items["episode_timeline"])[0]["data"]
    assert list(bars["threshold"]).count("> 10 bps") == 5
    assert list(bars["threshold"]).count("> 20 bps") == 0
    dist = source_named(items["net_edge_distribution"], "choice:a/b BTC-USD:bins")
    assert sum(dist["count"]) == 200
