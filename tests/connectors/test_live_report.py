"""The live summary page: the recorder's counts, the page's sections, plot data, offline."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pytest

from tests.report_html import external_references, plots, sections, source_named
from tickflow.connectors.live_html import write_live_report
from tickflow.connectors.live_report import (
    MAX_BUCKETS,
    MAX_LAG_SAMPLES,
    LiveReportData,
    LiveReportRecorder,
)
from tickflow.engine.errors import SinkError

T0 = 1_699_999_980_000_000  # µs, on a whole minute


def batch(start_s: float, n: int, step_ms: int = 100) -> pa.RecordBatch:
    """n rows over 3 symbols from ``start_s``; buy every 7th row, sell every 11th."""
    i = np.arange(n)
    ts = T0 + int(start_s * 1e6) + i * step_ms * 1000
    return pa.RecordBatch.from_pydict({
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "symbol": pa.array(np.array(["BTC-USD", "ETH-USD", "SOL-USD"])[i % 3]),
        "price": np.linspace(100, 101, n),
        "buy": pa.array((i % 7 == 0).astype(np.int8)),
        "sell": pa.array((i % 11 == 0).astype(np.int8))})


class Summary:
    """Shaped like the live executor's LiveSummary (what the recorder reads of it)."""

    signal_counts = MappingProxyType({"buy": 215, "sell": 137})

    def __init__(self) -> None:
        self.ticks, self.messages, self.seconds = 1_500, 1_506, 12.5
        self.dead_letters = {"malformed_json": 4, "not_an_object": 2}
        self.quality_counts = {"crossed_quote": 3}

    def latency_percentiles_ms(self) -> dict[str, float]:
        return {"p50": 1.25, "p99": 8.5, "p99.9": 20.0}


def test_recorder_counts_per_symbol_and_per_bucket() -> None:
    rec = LiveReportRecorder("demo", ["buy", "sell"], bucket_s=60)
    first, second = batch(0, 900), batch(90, 600)  # 0-90 s, then 90-150 s
    rec.update(first, np.zeros(900), 40)
    rec.update(second, np.zeros(600), 0)
    data = rec.data()
    sym = np.concatenate([first.column("symbol").to_numpy(zero_copy_only=False),
                          second.column("symbol").to_numpy(zero_copy_only=False)])
    assert data.ticks_per_symbol == {s: int((sym == s).sum())
                                     for s in ("BTC-USD", "ETH-USD", "SOL-USD")}
    buy = np.concatenate([first.column("buy").to_numpy(), second.column("buy").to_numpy()])
    assert data.signals_per_symbol["ETH-USD"]["buy"] == int(((sym == "ETH-USD") & (buy == 1))
                                                            .sum())
    assert data.bucket_start_us == [T0, T0 + 60_000_000, T0 + 120_000_000]
    ts = np.concatenate([first.column("timestamp").cast(pa.int64()).to_numpy(),
                         second.column("timestamp").cast(pa.int64()).to_numpy()])
    expected = [int(((ts >= b) & (ts < b + 60_000_000) & (buy == 1)).sum())
                for b in data.bucket_start_us]
    assert data.signals_over_time["buy"] == expected
    assert data.signal_totals == {"buy": int(buy.sum()),
                                  "sell": sum(data.signals_over_time["sell"])}
    assert data.lag_messages == [40, 0] and data.time_basis == "event time"
    # the run's own totals win where they are exact
    data = rec.data(Summary())
    assert data.signal_totals == Summary.signal_counts and data.messages == 1_506
    assert data.latency_ms == {"p50": 1.25, "p99": 8.5, "p99.9": 20.0}


def test_recorder_stays_bounded_on_a_long_run() -> None:
    rec = LiveReportRecorder("long", ["buy"], bucket_s=1)
    for k in range(3):  # 3 x 4,000 one-second buckets, each with a buy
        rec.update(batch(k * 4_000, 4_000, step_ms=1_000), None, k)
    for lag in range(2 * MAX_LAG_SAMPLES):
        rec.update(batch(0, 0), None, lag)
    data = rec.data()
    assert len(data.bucket_start_us) <= MAX_BUCKETS and data.bucket_s == 4.0
    assert sum(data.signals_over_time["buy"]) == 3 * len(range(0, 4_000, 7))  # none lost
    assert len(data.lag_messages) < MAX_LAG_SAMPLES
    assert data.lag_messages[-1] <= 2 * MAX_LAG_SAMPLES and data.lag_messages[0] == 0


def test_page_sections_data_and_offline(tmp_path: Path) -> None:
    rec = LiveReportRecorder("crypto-live", ["buy", "sell"], bucket_s=30)
    rec.update(batch(0, 900), np.zeros(900), 12)
    rec.update(batch(90, 600), np.zeros(600), 3)
    data = rec.data(Summary())
    path = write_live_report(tmp_path / "deep" / "live.html", data)
    page = path.read_text()
    assert not external_references(page)
    assert sections(page) == ["Ticks and signals per symbol", "Signals over time",
                              "Latency and consumer lag", "Dead letters and tick quality"]
    assert "6 of 1,506 messages (0.40%) went to the dead-letter topic." in page
    items = plots(page)
    assert set(items) == {"ticks_per_symbol", "signals_over_time", "consumer_lag",
                          "dead_letters", "quality"}
    over_time = source_named(items["signals_over_time"], "signals_over_time")
    assert list(over_time["x"]) == [b / 1e3 for b in data.bucket_start_us]
    assert list(over_time["s0"]) == data.signals_over_time["buy"]
    assert list(over_time["s1"]) == data.signals_over_time["sell"]
    lag = source_named(items["consumer_lag"], "consumer_lag")
    assert list(lag["lag"]) == [12, 3]
    assert "<td>p99.9</td>" not in page and "<th>p99.9</th>" in page and "20.00" in page
    assert "<td>malformed_json</td><td class=n>4</td>" in page
    assert "<td>crossed_quote</td><td class=n>3</td>" in page


def test_a_page_from_the_totals_alone(tmp_path: Path) -> None:
    class Quiet:  # a run that measured nothing and saw no signal
        def __init__(self) -> None:
            self.ticks, self.messages, self.seconds = 0, 0, 0.0
            self.signal_counts: dict[str, int] = {}
            self.dead_letters: dict[str, int] = {}
            self.quality_counts: dict[str, int] = {}

        def latency_percentiles_ms(self) -> dict[str, float]:
            return {}

    page = write_live_report(tmp_path / "q.html",
                             LiveReportData.from_summary("quiet", Quiet())).read_text()
    assert not plots(page) and "<script" not in page  # no plot: no Bokeh either
    for text in ("No signal fired in this run.", "Latency was not measured in this run.",
                 "Consumer lag was not recorded.", "No message went to the dead-letter topic.",
                 "The quality stage flagged no tick."):
        assert text in page


def test_an_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkError, match=r"live report: cannot write '.*file/live.html'"):
        write_live_report(blocker / "live.html", LiveReportData("x"))


def test_bucket_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bucket_s must be > 0"):
        LiveReportRecorder("x", [], bucket_s=0)
