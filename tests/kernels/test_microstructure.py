"""midprice, microprice, quoted_spread, l1_imbalance and ofi against numpy and plain loops."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import SYMBOLS, symbol_keys_and_ts, with_burst
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel
from tickflow.kernels.microstructure import OfiParams

N = 3000
QUOTES = ("best_bid", "best_ask", "best_bid_size", "best_ask_size")


def make_quotes(n: int = N, seed: int = 3) -> tuple[np.ndarray, np.ndarray, dict]:
    """Interleaved keys, irregular timestamps (us) with a burst of 80 rows 1 us apart (so time
    rings grow past 16), and L1 quotes per key whose prices often repeat (so every branch of the
    OFI indicators is taken) and whose sizes are sometimes 0."""
    rng = np.random.default_rng(seed)
    keys, ts = symbol_keys_and_ts(rng, n)
    ts = with_burst(ts)
    level = {"BTC-USD": 60_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0}
    tick = {"BTC-USD": 0.01, "ETH-USD": 0.01, "SOL-USD": 0.001}
    bid, ask = np.empty(n), np.empty(n)
    for s in SYMBOLS:
        m = keys == s
        moves = rng.choice([-1, 0, 0, 0, 1], size=m.sum())
        b = level[s] + np.cumsum(moves) * tick[s]
        bid[m] = np.round(b, 3)
        ask[m] = np.round(b + tick[s] * rng.integers(1, 4, m.sum()), 3)
    bid_size = np.round(rng.exponential(1.0, n), 4)
    ask_size = np.round(rng.exponential(1.0, n), 4)
    bid_size[rng.random(n) < 0.02] = 0.0
    ask_size[rng.random(n) < 0.02] = 0.0
    both = rng.random(n) < 0.01
    bid_size[both] = ask_size[both] = 0.0
    return keys, ts, {"best_bid": bid, "best_ask": ask, "best_bid_size": bid_size,
                      "best_ask_size": ask_size}


KEYS, TS, DATA = make_quotes()


def with_nan_rows(data: dict, every: int = 9) -> tuple[dict, np.ndarray]:
    """Put a NaN in one input (rotating over the inputs) on every ``every``-th row."""
    bad = np.zeros(N, dtype=bool)
    bad[4::every] = True
    holed = {c: v.copy() for c, v in data.items()}
    cols = list(holed)
    for j, i in enumerate(np.where(bad)[0]):
        holed[cols[j % len(cols)]][i] = np.nan
    return holed, bad


def assert_nan_rows_leave_state(name: str, inputs: tuple[str, ...], params: dict | None = None,
                                ts: np.ndarray = TS) -> None:
    """A NaN in any input outputs NaN; the other rows equal a run without those rows."""
    holed, bad = with_nan_rows({c: DATA[c] for c in inputs})
    got = run_kernel(name, holed, keys=KEYS, ts=ts, params=params)
    without = run_kernel(name, {c: DATA[c][~bad] for c in inputs}, keys=KEYS[~bad],
                         ts=ts[~bad], params=params)
    for col, values in got.items():
        assert np.isnan(values[bad]).all(), col
        np.testing.assert_array_equal(values[~bad], without[col], err_msg=col)


# --------------------------------------------------------------------------- stateless quotes


def test_midprice():
    got = run_kernel("midprice", DATA, keys=KEYS)["midprice"]
    np.testing.assert_allclose(got, (DATA["best_bid"] + DATA["best_ask"]) / 2, rtol=1e-15)
    assert run_kernel("midprice", {"best_bid": [99.0], "best_ask": [101.0]})["midprice"][0] \
        == 100.0


def test_microprice():
    b, a, qb, qa = (DATA[c] for c in QUOTES)
    got = run_kernel("microprice", DATA, keys=KEYS)["microprice"]
    total = qb + qa
    with np.errstate(invalid="ignore"):
        ref = np.where(total == 0, np.nan, (b * qa + a * qb) / total)
    np.testing.assert_allclose(got, ref, rtol=1e-14)
    assert np.isnan(got[total == 0]).all() and (total == 0).any()
    assert not np.isinf(got).any()
    one = run_kernel("microprice", {"best_bid": [99.0], "best_ask": [101.0],
                                    "best_bid_size": [3.0], "best_ask_size": [1.0]})
    assert one["microprice"][0] == 100.5
    # the microprice lies between bid and ask
    ok = ~np.isnan(got)
    assert ((got[ok] >= b[ok] - 1e-9) & (got[ok] <= a[ok] + 1e-9)).all()


def test_quoted_spread_bps():
    b, a = DATA["best_bid"], DATA["best_ask"]
    got = run_kernel("quoted_spread", DATA, keys=KEYS)["quoted_spread"]
    np.testing.assert_allclose(got, (a - b) / ((a + b) / 2) * 1e4, rtol=1e-12)
    one = run_kernel("quoted_spread", {"best_bid": [99.0], "best_ask": [101.0]})
    np.testing.assert_allclose(one["quoted_spread"], [200.0], rtol=1e-15)
    zero_mid = run_kernel("quoted_spread", {"best_bid": [-1.0, 0.0], "best_ask": [1.0, 0.0]})
    assert np.isnan(zero_mid["quoted_spread"]).all()


def test_l1_imbalance():
    qb, qa = DATA["best_bid_size"], DATA["best_ask_size"]
    got = run_kernel("l1_imbalance", DATA, keys=KEYS)["l1_imbalance"]
    total = qb + qa
    with np.errstate(invalid="ignore"):
        ref = np.where(total == 0, np.nan, (qb - qa) / total)
    np.testing.assert_allclose(got, ref, rtol=1e-14)
    assert np.isnan(got[total == 0]).all()
    ok = ~np.isnan(got)
    assert (np.abs(got[ok]) <= 1).all()
    one = run_kernel("l1_imbalance", {"best_bid_size": [3.0], "best_ask_size": [1.0]})
    assert one["l1_imbalance"][0] == 0.5


@pytest.mark.parametrize("name, inputs", [
    ("midprice", QUOTES[:2]), ("microprice", QUOTES), ("quoted_spread", QUOTES[:2]),
    ("l1_imbalance", QUOTES[2:]),
])
def test_stateless_nan_rows(name, inputs):
    assert_nan_rows_leave_state(name, inputs)


# --------------------------------------------------------------------------- ofi


def ofi_events(b, a, qb, qa) -> list[float | None]:
    """e_t per row of one key, straight from KERNELS.md; None on the first row."""
    out: list[float | None] = [None]
    for t in range(1, len(b)):
        e = 0.0
        if b[t] >= b[t - 1]:
            e += qb[t]
        if b[t] <= b[t - 1]:
            e -= qb[t - 1]
        if a[t] <= a[t - 1]:
            e -= qa[t]
        if a[t] >= a[t - 1]:
            e += qa[t - 1]
        out.append(e)
    return out


def ofi_loop(b, a, qb, qa, t, window: int | str, min_periods: int = 2) -> np.ndarray:
    """Sum of e over the last ``window`` events, or over events with time in (t - d, t]."""
    events = ofi_events(b, a, qb, qa)
    span = pd.Timedelta(window.replace("m", "min") if isinstance(window, str)
                        and window.endswith("m") else window).value // 1000 \
        if isinstance(window, str) else 0
    out = np.full(len(b), np.nan)
    for i in range(1, len(b)):
        if isinstance(window, int):
            if i >= window:
                out[i] = math.fsum(events[i - window + 1: i + 1])
        else:
            inside = [events[j] for j in range(1, i + 1) if t[j] > t[i] - span]
            if len(inside) >= min_periods:
                out[i] = math.fsum(inside)
    return out


def test_ofi_hand_example():
    got = run_kernel("ofi", {"best_bid": [99.0, 100.0, 100.0, 99.5],
                             "best_ask": [101.0, 101.0, 100.5, 100.5],
                             "best_bid_size": [5.0, 2.0, 3.0, 4.0],
                             "best_ask_size": [5.0, 4.0, 1.0, 6.0]})["ofi"]
    # row 1: bid up (+2), ask equal (-4 + 5) -> 3; row 2: bid equal (+3 - 2), ask down (-1)
    # -> 0; row 3: bid down (-3), ask equal (-6 + 1) -> -8
    np.testing.assert_array_equal(got, [np.nan, 3.0, 0.0, -8.0])


@pytest.mark.parametrize("window", [1, 2, 10, 50])
def test_ofi_row_window_matches_loop(window):
    got = run_kernel("ofi", DATA, keys=KEYS, params={"window": window})["ofi"]
    ref = np.full(N, np.nan)
    for s in SYMBOLS:
        m = np.equal(KEYS, s)
        ref[m] = ofi_loop(*(DATA[c][m] for c in QUOTES), TS[m], window)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
    assert np.array_equal(np.isnan(got), np.isnan(ref))


def test_ofi_window_one_is_the_event_itself():
    got = run_kernel("ofi", DATA, keys=KEYS)["ofi"]
    for s in SYMBOLS:
        m = np.equal(KEYS, s)
        events = ofi_events(*(DATA[c][m] for c in QUOTES))
        np.testing.assert_array_equal(got[m], [np.nan if e is None else e for e in events])


@pytest.mark.parametrize("window, min_periods", [("30s", 2), ("5s", 1), ("2m", 5)])
def test_ofi_time_window_matches_loop(window, min_periods):
    got = run_kernel("ofi", DATA, keys=KEYS, ts=TS,
                     params={"window": window, "min_periods": min_periods})["ofi"]
    ref = np.full(N, np.nan)
    for s in SYMBOLS:
        m = np.equal(KEYS, s)
        ref[m] = ofi_loop(*(DATA[c][m] for c in QUOTES), TS[m], window, min_periods)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
    assert np.array_equal(np.isnan(got), np.isnan(ref))


def test_ofi_edges():
    one = {c: [1.0] for c in QUOTES}
    assert np.isnan(run_kernel("ofi", one)["ofi"]).all()
    # constant prices: e = (q^b_t - q^b_{t-1}) - (q^a_t - q^a_{t-1})
    flat = {"best_bid": np.full(4, 100.0), "best_ask": np.full(4, 100.5),
            "best_bid_size": np.array([1.0, 3.0, 2.0, 2.0]),
            "best_ask_size": np.array([1.0, 1.0, 4.0, 0.5])}
    np.testing.assert_array_equal(run_kernel("ofi", flat)["ofi"], [np.nan, 2.0, -4.0, 3.5])
    # keys interleaved row by row, and a key seen once stays NaN
    keys = np.r_[np.tile(["a", "b"], 200), ["c"]]
    data = {c: np.r_[DATA[c][:400], 1.0] for c in QUOTES}
    got = run_kernel("ofi", data, keys=keys, params={"window": 3})["ofi"]
    for s in ("a", "b"):
        m = keys == s
        alone = run_kernel("ofi", {c: v[m] for c, v in data.items()}, params={"window": 3})
        np.testing.assert_array_equal(got[m], alone["ofi"])
    assert np.isnan(got[-1])


def test_ofi_nan_keeps_previous_quote():
    # the NaN row is skipped: row 2 compares with row 0's quote
    got = run_kernel("ofi", {"best_bid": [99.0, np.nan, 100.0], "best_ask": [101.0] * 3,
                             "best_bid_size": [5.0, 1.0, 2.0],
                             "best_ask_size": [5.0, 1.0, 4.0]})["ofi"]
    np.testing.assert_array_equal(got, [np.nan, np.nan, 3.0])


@pytest.mark.parametrize("window", [1, 7, "30s"])
def test_ofi_nan_leaves_state_unchanged(window):
    assert_nan_rows_leave_state("ofi", QUOTES, {"window": window})


def test_ofi_long_run_sum_does_not_drift():
    # 20,000 events through a 5-row window: the running sum is recomputed from the ring.
    rng = np.random.default_rng(5)
    n = 20_000
    data = {"best_bid": 100 + rng.integers(-1, 2, n) * 0.01, "best_ask": np.full(n, 100.02),
            "best_bid_size": rng.exponential(1e4, n), "best_ask_size": rng.exponential(1e-2, n)}
    got = run_kernel("ofi", data, params={"window": 5})["ofi"]
    ref = ofi_loop(*(data[c] for c in QUOTES), np.arange(n), 5)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("bad", [{"window": 0}, {"window": "-1s"}, {"window": "fast"},
                                 {"window": 1.5}, {"min_periods": 0}, {"alpha": 0.1}])
def test_ofi_params_reject(bad):
    with pytest.raises(ValidationError):
        OfiParams(**bad)


def test_ofi_params_defaults():
    assert OfiParams().window == 1
    assert OfiParams(window="1m").window == "1m"


# --------------------------------------------------------------------------- stream contract

CASES = [
    ("midprice", {}), ("microprice", {}), ("quoted_spread", {}), ("l1_imbalance", {}),
    ("ofi", {}), ("ofi", {"window": 8}), ("ofi", {"window": "30s"}),
    ("ofi", {"window": "10s", "min_periods": 1}),
]
SPLIT_N = 600
SUB = {c: v[:SPLIT_N] for c, v in DATA.items()}


@pytest.mark.parametrize("name, params", CASES)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, SPLIT_N - 1), max_size=6))
def test_split_invariance(name, params, splits):
    assert_split_invariant(name, SUB, splits=splits, keys=KEYS[:SPLIT_N], ts=TS[:SPLIT_N],
                           params=params)


@pytest.mark.parametrize("name, params", CASES)
@pytest.mark.parametrize("at", [1, 20, 150, 599])
def test_state_roundtrip(name, params, at):
    assert_state_roundtrip(name, SUB, at=at, keys=KEYS[:SPLIT_N], ts=TS[:SPLIT_N],
                           params=params)
