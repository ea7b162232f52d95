"""The time-window edge, for every (T) kernel in the registry: a window is (t - duration, t].

The other suites use random microsecond stamps that never land exactly one window apart. Here
the stamps sit on a coarse 10 s grid with ties (several rows at one stamp) and gaps of exactly
one 30 s window, so the row exactly one window old is present on most rows and must be out.

The reference is the definition itself: a kernel's output on a row equals its output on a
fresh run over exactly that row's window, the key's rows with stamps in (t - 30 s, t], where
nothing is ever evicted. Kernels that also read the value just before the window (a return's
previous |r|, a price difference, the previous quote) get those rows too, placed far in the
past so that no edge can keep them.
"""

from __future__ import annotations

import numpy as np
import pytest

import tickflow.kernels  # noqa: F401  (registers the built-ins)
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import run_kernel

SPAN_US = 30_000_000
GRID_US = 10_000_000
N = 360

PARAMS = {"hayashi_yoshida_corr": None, "hayashi_yoshida_cov": None}
"""Cross-key kernels pair two keys' windows: covered by tests/kernels/test_cross_key.py."""
LOOK_BACK = {"bipower_var": 1, "roll_spread": 2, "ofi": 1}
"""Rows before the window a kernel reads: the previous |r|, price differences, quotes."""


def time_window_kernels() -> list[str]:
    return sorted(e.name for e in KERNELS if getattr(e.obj, "time_window", False))


def coarse_data(seed: int = 3) -> dict[str, np.ndarray]:
    """Three keys; per row the stamp moves 0 (a tie), 1, 2 or 3 grid steps (3 = exactly one
    window), so each key's rows are often exactly 30 s apart."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([0, 0, 1, 1, 2, 3], size=N)
    ts = 1_700_000_000_000_000 + np.cumsum(steps) * GRID_US
    keys = rng.choice(np.array(["A", "B", "C"]), size=N)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, N)))
    bid = price - rng.uniform(0.01, 0.05, N)
    return {"keys": keys, "ts": ts.astype(np.int64), "price": price,
            "log_return": rng.normal(0, 0.01, N), "last_size": rng.uniform(0.1, 2.0, N),
            "signed_volume": rng.normal(0, 1.0, N), "x": rng.normal(0, 1.0, N),
            "y": rng.normal(0, 1.0, N), "best_bid": np.round(bid, 2),
            "best_ask": np.round(bid + 0.02, 2), "best_bid_size": rng.uniform(0.5, 3.0, N),
            "best_ask_size": rng.uniform(0.5, 3.0, N)}


DATA = coarse_data()


def test_the_grid_has_ties_and_gaps_of_exactly_one_window():
    for k in "ABC":
        d = np.diff(DATA["ts"][DATA["keys"] == k])
        assert (d == 0).sum() > 5 and (d == SPAN_US).sum() > 5


def test_every_time_window_kernel_is_covered():
    assert set(time_window_kernels()) >= set(PARAMS)
    assert len(time_window_kernels()) >= 20


@pytest.mark.parametrize("name", [n for n in time_window_kernels() if n not in PARAMS])
def test_row_exactly_one_window_old_is_out(name):
    d = KERNELS.get(name)
    params = {"window": "30s", "min_periods": 1}
    cols = {c: DATA[c] for c in d.inputs}
    got = run_kernel(name, cols, keys=DATA["keys"], ts=DATA["ts"], params=params)
    back = LOOK_BACK.get(name, 0)
    checked = edges = 0
    for k in "ABC":
        rows = np.flatnonzero(DATA["keys"] == k)
        ts = DATA["ts"][rows]
        for j, row in enumerate(rows):
            inside = rows[(ts > ts[j] - SPAN_US) & (np.arange(len(rows)) <= j)]
            start = int(np.searchsorted(rows, inside[0]))
            before = rows[max(0, start - back):start]
            sub = np.concatenate([before, inside])
            sub_ts = DATA["ts"][sub].copy()
            sub_ts[:len(before)] = ts[j] - 10 * SPAN_US + np.arange(len(before))
            ref = run_kernel(name, {c: v[sub] for c, v in cols.items()}, ts=sub_ts,
                             params=params)
            edges += bool((ts[:j] == ts[j] - SPAN_US).any())
            for out, values in got.items():
                a, b = values[row], ref[out][-1]
                assert a == b or (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-9 * abs(b), (
                    f"{name}.{out}, key {k}, row {row}: {a!r} over the whole stream, {b!r} "
                    f"over the window alone")
            checked += 1
    assert checked == N and edges > 30


@pytest.mark.parametrize(("name", "col", "out", "how"), [
    ("rolling_min", "price", "price_min30s", "min"),
    ("rolling_max", "price", "price_max30s", "max"),
    ("sma", "price", "sma", "mean"), ("rolling_std", "log_return", "log_return_std30s", "std"),
    ("rolling_skew", "log_return", "log_return_skew30s", "skew"),
    ("rolling_kurt", "log_return", "log_return_kurt30s", "kurt")])
def test_matches_pandas_time_rolling_on_the_grid(name, col, out, how):
    """pandas ``rolling('30s')`` (also (t - 30 s, t], ties included) as a second reference."""
    import pandas as pd

    got = run_kernel(name, {col: DATA[col]}, inputs=[col], keys=DATA["keys"], ts=DATA["ts"],
                     params={"window": "30s", "min_periods": 1})[out]
    for k in "ABC":
        m = DATA["keys"] == k
        s = pd.Series(DATA[col][m], index=pd.to_datetime(DATA["ts"][m], unit="us"))
        expected = getattr(s.rolling("30s", min_periods=1), how)().to_numpy()
        np.testing.assert_allclose(got[m], expected, rtol=1e-9, atol=1e-12, err_msg=k)
