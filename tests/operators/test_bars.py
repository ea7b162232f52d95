"""resample_ohlc, volume_bars and dollar_bars against pandas / plain loops written from
KERNELS.md, and their streaming contract (any split, save/restore anywhere: same bars)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickflow.engine.errors import KernelRuntimeError
from tickflow.engine.operators.testing import assert_tables_equal, run_operator

US = 1_000_000
T0 = 1_700_000_000 * US


def ticks(n: int = 3000, seed: int = 3) -> pa.Table:
    """Interleaved keys (one seen once), bursts of equal times, long gaps, ~3% NaN prices and
    sizes, nulls in size."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(np.array(["BTC", "ETH", "SOL"]), size=n).astype(object)
    keys[n // 2] = "ONCE"
    gaps = rng.exponential(0.7 * US, n).astype(np.int64)
    gaps[rng.random(n) < 0.2] = 0
    gaps[rng.random(n) < 0.005] = 120 * US
    ts = T0 + np.cumsum(gaps)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    size = rng.lognormal(0, 1, n)
    price[rng.random(n) < 0.03] = np.nan
    size[rng.random(n) < 0.03] = np.nan
    size_arr = pa.array(size, mask=rng.random(n) < 0.02)
    return pa.table({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "symbol": pa.array(keys.tolist(), pa.string()),
                     "price": pa.array(price), "last_size": size_arr})


TICKS = ticks()


def resample_reference(table: pa.Table, interval_us: int) -> pd.DataFrame:
    df = table.to_pandas()
    df["t"] = table.column("timestamp").cast(pa.int64()).to_numpy()
    first_seen = {k: i for i, k in reversed(list(enumerate(df["symbol"])))}
    df = df[df["price"].notna()].copy()
    df["size"] = df["last_size"].fillna(0.0)
    df["bucket"] = df["t"] // interval_us
    df["pv"] = df["price"] * df["size"]
    g = df.groupby(["symbol", "bucket"], sort=False)
    out = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                close=("price", "last"), volume=("size", "sum"), pv=("pv", "sum"),
                trades=("price", "size")).reset_index()
    out["vwap"] = np.where(out["volume"] > 0, out["pv"] / out["volume"].where(
        out["volume"] > 0, 1.0), np.nan)
    out["bar_start"] = out["bucket"] * interval_us
    out["bar_end"] = out["bar_start"] + interval_us
    out["order"] = out["symbol"].map(first_seen)
    cols = ["bar_end", "order", "symbol", "bar_start", "open", "high", "low", "close",
            "volume", "vwap", "trades"]
    return out[cols].sort_values(["bar_end", "order"]).reset_index(drop=True)


def as_us(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy()


@pytest.mark.parametrize("interval", ["10s", "1m", "1h"])
def test_resample_ohlc_equals_a_pandas_groupby(interval: str) -> None:
    got = run_operator("resample_ohlc", {"in": TICKS}, params={"interval": interval})
    seconds = {"10s": 10, "1m": 60, "1h": 3600}[interval]
    ref = resample_reference(TICKS, seconds * US)
    assert got.schema.names == ["timestamp", "symbol", "bar_start", "bar_end", "open", "high",
                                "low", "close", "volume", "vwap", "trades"]
    assert got.column("symbol").to_pylist() == ref["symbol"].tolist()
    np.testing.assert_array_equal(as_us(got.column("timestamp")), ref["bar_end"])
    np.testing.assert_array_equal(as_us(got.column("bar_end")), ref["bar_end"])
    np.testing.assert_array_equal(as_us(got.column("bar_start")), ref["bar_start"])
    for col in ("open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got.column(col).to_numpy(), ref[col].to_numpy(),
                                      err_msg=col)
    for col in ("volume", "vwap"):
        np.testing.assert_allclose(got.column(col).to_numpy(), ref[col].to_numpy(),
                                   rtol=1e-12, err_msg=col)
    assert np.all(np.diff(as_us(got.column("timestamp"))) >= 0)


def test_a_bar_is_emitted_as_soon_as_a_later_interval_starts() -> None:
    from tickflow.engine.operators.testing import bind

    bound = bind("resample_ohlc", {"in": TICKS.schema.names}, params={"interval": "1m"})
    op = bound.make()
    op.bind({"in": TICKS.schema})
    minute = 60 * US
    t = pa.array([T0 - T0 % minute + s * US for s in (1, 30, 59, 61)],
                 pa.timestamp("us", tz="UTC"))
    batch = pa.table({"timestamp": t, "symbol": ["A", "B", "A", "B"],
                      "price": [1.0, 2.0, 3.0, 4.0], "last_size": [1.0, 1.0, 1.0, 1.0]})
    out = op.push("in", batch.slice(0, 3).to_batches()[0])
    assert out == []  # nothing shows the minute is over yet
    assert op.watermark() == T0 - T0 % minute + minute
    out = op.push("in", batch.slice(3).to_batches()[0])  # B's row at :61 closes A's bar too
    closed = pa.Table.from_batches(out)
    assert closed.column("symbol").to_pylist() == ["A", "B"]
    assert closed.column("close").to_pylist() == [3.0, 2.0]
    flushed = pa.Table.from_batches(op.end("in"))
    assert flushed.column("symbol").to_pylist() == ["B"]


def threshold_reference(table: pa.Table, threshold: float, dollar: bool) -> list[tuple]:
    ts = as_us(table.column("timestamp"))
    keys = table.column("symbol").to_pylist()
    price = table.column("price").to_numpy()
    size = table.column("last_size").to_numpy(zero_copy_only=False)
    open_bars: dict[str, dict] = {}
    bars = []
    for t, k, p, s in zip(ts, keys, price, size, strict=True):
        if math.isnan(p):
            continue
        s = float("nan") if s is None else s
        bar = open_bars.setdefault(k, {"start": t, "o": p, "h": p, "l": p, "vol": 0.0,
                                       "pv": 0.0, "n": 0, "acc": 0.0})
        bar["h"], bar["l"], bar["c"] = max(bar["h"], p), min(bar["l"], p), p
        bar["n"] += 1
        if not math.isnan(s):
            bar["vol"] += s
            bar["pv"] += p * s
            bar["acc"] += p * s if dollar else s
        if bar["acc"] >= threshold:
            vwap = bar["pv"] / bar["vol"] if bar["vol"] > 0 else float("nan")
            bars.append((t, k, bar["start"], t, bar["o"], bar["h"], bar["l"], bar["c"],
                         bar["vol"], vwap, bar["n"]))
            del open_bars[k]
    return bars


@pytest.mark.parametrize(("name", "threshold", "dollar"),
                         [("volume_bars", 25.0, False), ("dollar_bars", 2500.0, True)])
def test_activity_bars_equal_a_plain_loop(name: str, threshold: float, dollar: bool) -> None:
    got = run_operator(name, {"in": TICKS}, params={"threshold": threshold})
    ref = threshold_reference(TICKS, threshold, dollar)
    assert got.num_rows == len(ref) > 50
    cols = [as_us(got.column("timestamp")), got.column("symbol").to_pylist(),
            as_us(got.column("bar_start")), as_us(got.column("bar_end")),
            *[got.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume",
                                                 "vwap", "trades")]]
    for j, col in enumerate(cols):
        expected = [r[j] for r in ref]
        if j == 1:
            assert col == expected
        else:
            np.testing.assert_array_equal(np.asarray(col), np.asarray(expected))


def test_rows_out_of_time_order_are_a_located_error() -> None:
    late = pa.concat_tables([TICKS.slice(0, 500), TICKS.slice(0, 1)])
    with pytest.raises(KernelRuntimeError, match=r"row 500 of stream 'in' is earlier than "
                                                 r"the interval already being built"):
        run_operator("resample_ohlc", {"in": late}, params={"interval": "10s"})


CASES = [("resample_ohlc", {"interval": "10s"}), ("resample_ohlc", {"interval": "1m"}),
         ("volume_bars", {"threshold": 10.0}), ("dollar_bars", {"threshold": 900.0})]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), data=st.data())
def test_any_split_and_restore_gives_the_same_bars(case: tuple, data: st.DataObject) -> None:
    name, params = case
    n = data.draw(st.integers(0, 600), label="rows")
    table = TICKS.slice(data.draw(st.integers(0, 2000), label="start"), n)
    whole = run_operator(name, {"in": table}, params=params)
    cuts = data.draw(st.lists(st.integers(1, max(1, n)), max_size=8), label="cuts")
    restore_at = data.draw(st.one_of(st.none(), st.integers(1, 9)), label="restore_at")
    cut = run_operator(name, {"in": table}, params=params, chunks={"in": cuts},
                       restore_at=restore_at)
    assert_tables_equal(cut, whole)
