"""Merging per-partition report sinks gives the statistics of one sink fed everything."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink


def ticks(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    symbols = np.array(["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"])[rng.integers(0, 4, n)]
    ts = np.sort(rng.integers(0, 120_000_000, n)) + 1_700_000_000_000_000
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    ret = rng.normal(0, 1e-3, n)
    ret[rng.random(n) < 0.05] = np.nan
    return pa.table({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "symbol": symbols, "price": price, "log_return": ret,
                     "rsi": rng.uniform(0, 100, n), "l1_imbalance": rng.uniform(-1, 1, n),
                     "cusum_alarm": (rng.random(n) < 0.01).astype(np.int8)})


def sink_of(*tables: pa.Table) -> ResearchReportSink:
    sink = ResearchReportSink(ResearchReportConfig(), RunContext(job_name="t", quiet=True))
    for table in tables:
        for batch in table.to_batches(max_chunksize=997):
            sink.write(batch)
    return sink


def assert_same_results(expected: dict, got: dict) -> None:
    assert got["symbols"] == expected["symbols"]
    assert got["rows"] == expected["rows"]
    assert (got["start"], got["end"], got["grid_points"]) == \
        (expected["start"], expected["end"], expected["grid_points"])
    for sym in expected["symbols"]:
        for stat, value in expected["stats"][sym].items():
            assert got["stats"][sym][stat] == pytest.approx(value, rel=1e-12, abs=1e-18), \
                (sym, stat)
    np.testing.assert_allclose(got["correlation"], expected["correlation"], rtol=1e-12)


def test_merging_sinks_of_disjoint_key_partitions() -> None:
    table = ticks(20_000, 1)
    sym = table.column("symbol").to_numpy(zero_copy_only=False)
    first = np.isin(sym, ["ETH-USD", "XRP-USD"])
    merged = sink_of(table.filter(pa.array(first)))
    merged.merge(sink_of(table.filter(pa.array(~first))))
    assert_same_results(sink_of(table).results(), merged.results())


def test_merging_a_later_stretch_of_the_same_keys() -> None:
    table = ticks(20_000, 2)
    merged = sink_of(table.slice(0, 7_000))
    merged.merge(sink_of(table.slice(7_000)))
    merged.merge(sink_of(table.slice(0, 0)))  # an empty partition changes nothing
    assert_same_results(sink_of(table).results(), merged.results())
