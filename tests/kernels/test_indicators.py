"""macd, rsi and bollinger_bands against TA-Lib, pandas and plain loops (KERNELS.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import level_walk, per_key, symbol_keys_and_ts, with_burst
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel
from tickflow.kernels.indicators import BollingerParams, MacdParams, RsiParams

N = 3000


def make_ticks(n: int = N, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved keys, irregular timestamps (us) with a burst of 80 rows 1 us apart (so 30s
    rings grow), prices per key at very different levels with a flat stretch on BTC."""
    rng = np.random.default_rng(seed)
    keys, ts = symbol_keys_and_ts(rng, n)
    ts = with_burst(ts)
    price = level_walk(rng, keys)
    flat = np.where(keys == "BTC-USD")[0][300:400]
    price[flat] = price[flat[0]]
    return keys, ts, price


KEYS, TS, PRICE = make_ticks()


def assert_nan_rows_leave_state(name: str, keys: np.ndarray, ts: np.ndarray,
                                params: dict | None = None, every: int = 7) -> None:
    """A NaN price outputs NaN in every column; other rows equal a run without those rows."""
    bad = np.zeros(len(keys), dtype=bool)
    bad[3::every] = True
    with_nan = run_kernel(name, {"price": np.where(bad, np.nan, PRICE)}, keys=keys, ts=ts,
                          params=params)
    without = run_kernel(name, {"price": PRICE[~bad]}, keys=keys[~bad], ts=ts[~bad],
                         params=params)
    for col, got in with_nan.items():
        assert np.isnan(got[bad]).all(), col
        np.testing.assert_array_equal(got[~bad], without[col], err_msg=col)


# --------------------------------------------------------------------------- macd


def macd_loop(x: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, ...]:
    """KERNELS.md, row by row: EMAs seeded with the first value, signal seeded with macd_0."""
    af, aslow, asig = 2 / (fast + 1), 2 / (slow + 1), 2 / (signal + 1)
    line, sig = np.empty(len(x)), np.empty(len(x))
    mf = ms = msig = None
    for i, v in enumerate(x):
        if mf is None:
            mf = ms = v
        else:
            mf = af * v + (1 - af) * mf
            ms = aslow * v + (1 - aslow) * ms
        m = mf - ms
        msig = m if msig is None else asig * m + (1 - asig) * msig
        line[i], sig[i] = m, msig
    return line, sig, line - sig


# TA-Lib's MACD is not a reference here: it seeds each EMA with the SMA of its first `period`
# values and starts its output after slow + signal - 2 rows, while KERNELS.md seeds every EMA
# with the first value and outputs from the first row. A plain loop and pandas are used instead.
@pytest.mark.parametrize("params", [{}, {"fast": 3, "slow": 10, "signal": 4}])
def test_macd_matches_loop_and_pandas(params):
    got = run_kernel("macd", {"price": PRICE}, keys=KEYS, params=params)
    p = MacdParams(**params)
    for j, col in enumerate(("macd", "macd_signal", "macd_hist")):
        ref = per_key(KEYS, lambda x, j=j: macd_loop(x, p.fast, p.slow, p.signal)[j], PRICE)
        np.testing.assert_allclose(got[col], ref, rtol=1e-9, atol=1e-9, err_msg=col)

    def pandas_ref(x):
        s = pd.Series(x)
        line = s.ewm(span=p.fast, adjust=False).mean() - s.ewm(span=p.slow, adjust=False).mean()
        return line.to_numpy(), line.ewm(span=p.signal, adjust=False).mean().to_numpy()

    np.testing.assert_allclose(got["macd"], per_key(KEYS, lambda x: pandas_ref(x)[0], PRICE),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got["macd_signal"],
                               per_key(KEYS, lambda x: pandas_ref(x)[1], PRICE),
                               rtol=1e-9, atol=1e-9)


def test_macd_first_row_single_row_and_constant():
    got = run_kernel("macd", {"price": [60_000.0]})
    assert [got[c][0] for c in ("macd", "macd_signal", "macd_hist")] == [0.0, 0.0, 0.0]
    got = run_kernel("macd", {"price": np.full(100, 3_000.5)})
    for col in ("macd", "macd_signal", "macd_hist"):
        np.testing.assert_allclose(got[col], 0.0, atol=1e-9)


def test_macd_hist_is_macd_minus_signal():
    got = run_kernel("macd", {"price": PRICE}, keys=KEYS)
    np.testing.assert_array_equal(got["macd_hist"], got["macd"] - got["macd_signal"])


def test_macd_nan_leaves_state_unchanged():
    assert_nan_rows_leave_state("macd", KEYS, TS)


@pytest.mark.parametrize("bad", [{"fast": 26, "slow": 12}, {"fast": 12, "slow": 12},
                                 {"fast": 0}, {"slow": -1}, {"signal": 0}, {"signal": True},
                                 {"fast": 2.5}, {"window": 5}])
def test_macd_params_reject(bad):
    with pytest.raises(ValidationError):
        MacdParams(**bad)


def test_macd_params_message_names_fast_and_slow():
    with pytest.raises(ValidationError, match="fast must be < slow"):
        MacdParams(fast=30)


# --------------------------------------------------------------------------- rsi


@pytest.mark.parametrize("period", [2, 3, 14, 30])
def test_rsi_matches_talib(period):
    got = run_kernel("rsi", {"price": PRICE}, keys=KEYS, params={"period": period})["rsi"]
    ref = per_key(KEYS, lambda x: talib.RSI(x, timeperiod=period), PRICE)
    # Same operations in TA-Lib's order: equal to the last bit on the installed TA-Lib; the
    # tolerance only keeps the test independent of how TA-Lib's build rounds.
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)
    assert np.array_equal(np.isnan(got), np.isnan(ref))


def rsi_loop(x: np.ndarray, period: int) -> np.ndarray:
    """KERNELS.md, row by row with plain divisions."""
    out = np.full(len(x), np.nan)
    gain = loss = 0.0
    for i in range(1, len(x)):
        change = x[i] - x[i - 1]
        up, down = max(change, 0.0), max(-change, 0.0)
        if i <= period:
            gain += up / period
            loss += down / period
            if i < period:
                continue
        else:
            gain = (gain * (period - 1) + up) / period
            loss = (loss * (period - 1) + down) / period
        out[i] = 0.0 if gain + loss == 0 else 100 * gain / (gain + loss)
    return out


def test_rsi_matches_loop():
    got = run_kernel("rsi", {"price": PRICE}, keys=KEYS, params={"period": 9})["rsi"]
    np.testing.assert_allclose(got, per_key(KEYS, lambda x: rsi_loop(x, 9), PRICE),
                               rtol=1e-9, atol=1e-9)


def test_rsi_warm_up_and_edges():
    x = PRICE[KEYS == "ETH-USD"][:40]
    got = run_kernel("rsi", {"price": x})["rsi"]
    assert np.isnan(got[:14]).all() and np.isfinite(got[14:]).all()
    assert np.isnan(run_kernel("rsi", {"price": [1.0]})["rsi"]).all()
    np.testing.assert_array_equal(run_kernel("rsi", {"price": [1.0, 2.0, 1.0]},
                                             params={"period": 2})["rsi"], [np.nan, np.nan, 50.0])
    # constant prices: both averages are 0, so rsi is 0 (as TA-Lib)
    flat = np.full(30, 150.25)
    got = run_kernel("rsi", {"price": flat})["rsi"]
    np.testing.assert_array_equal(got[14:], 0.0)
    np.testing.assert_array_equal(got, talib.RSI(flat, 14))
    # only gains -> 100, only losses -> 0
    np.testing.assert_allclose(run_kernel("rsi", {"price": np.arange(20.0)})["rsi"][14:], 100.0)
    np.testing.assert_array_equal(run_kernel("rsi", {"price": -np.arange(20.0)})["rsi"][14:],
                                  0.0)


def test_rsi_keys_interleaved_row_by_row_and_key_seen_once():
    keys = np.r_[np.tile(["a", "b"], 60), ["c"]]
    x = np.r_[PRICE[:120], 7.0]
    got = run_kernel("rsi", {"price": x}, keys=keys, params={"period": 5})["rsi"]
    for s in ("a", "b"):
        m = keys == s
        np.testing.assert_array_equal(got[m], talib.RSI(x[m], 5))
    assert np.isnan(got[-1])


def test_rsi_nan_leaves_state_unchanged():
    assert_nan_rows_leave_state("rsi", KEYS, TS, {"period": 5})


@pytest.mark.parametrize("bad", [{"period": 1}, {"period": 0}, {"period": -14},
                                 {"period": True}, {"period": 2.5}, {"window": 14}])
def test_rsi_params_reject(bad):
    with pytest.raises(ValidationError):
        RsiParams(**bad)


# --------------------------------------------------------------------------- bollinger


@pytest.mark.parametrize("window, k", [(20, 2.0), (5, 1.5), (2, 3.0)])
def test_bollinger_matches_talib(window, k):
    got = run_kernel("bollinger_bands", {"price": PRICE}, keys=KEYS,
                     params={"window": window, "k": k})
    for j, col in enumerate(("bb_upper", "bb_mid", "bb_lower")):
        ref = per_key(KEYS, lambda x, j=j: talib.BBANDS(x, timeperiod=window, nbdevup=k,
                                                        nbdevdn=k, matype=0)[j], PRICE)
        # TA-Lib takes the variance as E[x^2] - E[x]^2, which loses ~1e-7 near 60,000
        np.testing.assert_allclose(got[col], ref, rtol=0, atol=1e-6, err_msg=col)
        assert np.array_equal(np.isnan(got[col]), np.isnan(ref)), col


def test_bollinger_rows_match_pandas_population_std():
    got = run_kernel("bollinger_bands", {"price": PRICE}, keys=KEYS)

    def ref(x):
        r = pd.Series(x).rolling(20)
        return r.mean().to_numpy(), r.std(ddof=0).to_numpy()

    mid = per_key(KEYS, lambda x: ref(x)[0], PRICE)
    std = per_key(KEYS, lambda x: ref(x)[1], PRICE)
    np.testing.assert_allclose(got["bb_mid"], mid, rtol=1e-12)
    np.testing.assert_allclose(got["bb_upper"], mid + 2 * std, rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(got["bb_lower"], mid - 2 * std, rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("window, min_periods", [("30s", 2), ("10s", 1)])
def test_bollinger_time_window_matches_pandas(window, min_periods):
    got = run_kernel("bollinger_bands", {"price": PRICE}, keys=KEYS, ts=TS,
                     params={"window": window, "k": 2.5, "min_periods": min_periods})

    def ref(x, t, what):
        r = pd.Series(x, index=pd.to_datetime(t, unit="us")).rolling(window,
                                                                     min_periods=min_periods)
        mean = r.mean().to_numpy()
        # pandas' online time-window variance leaves a residue (up to ~1e-5 near 60,000) on a
        # window of equal values, whose population std is exactly 0
        std = np.where((r.max() == r.min()).to_numpy(), 0.0, r.std(ddof=0).to_numpy())
        return {"bb_mid": mean, "bb_upper": mean + 2.5 * std, "bb_lower": mean - 2.5 * std}[what]

    for col in ("bb_mid", "bb_upper", "bb_lower"):
        expected = per_key(KEYS, lambda x, t, col=col: ref(x, t, col), PRICE, TS)
        np.testing.assert_allclose(got[col], expected, rtol=1e-12, atol=1e-8, err_msg=col)
        assert np.array_equal(np.isnan(got[col]), np.isnan(expected)), col


def test_bollinger_edges():
    got = run_kernel("bollinger_bands", {"price": [1.0, 3.0]}, params={"window": 2})
    assert np.isnan(got["bb_mid"][0])
    assert [got[c][1] for c in ("bb_mid", "bb_upper", "bb_lower")] == [2.0, 4.0, 0.0]
    single = run_kernel("bollinger_bands", {"price": [5.0]})
    assert all(np.isnan(v).all() for v in single.values())
    flat = run_kernel("bollinger_bands", {"price": np.full(40, 60_000.01)})
    np.testing.assert_array_equal(flat["bb_upper"][19:], flat["bb_mid"][19:])
    np.testing.assert_array_equal(flat["bb_lower"][19:], flat["bb_mid"][19:])
    np.testing.assert_allclose(flat["bb_mid"][19:], 60_000.01, rtol=1e-15)


@pytest.mark.parametrize("window", [20, "30s"])
def test_bollinger_nan_leaves_state_unchanged(window):
    assert_nan_rows_leave_state("bollinger_bands", KEYS, TS, {"window": window})


@pytest.mark.parametrize("bad", [{"k": -1.0}, {"k": float("nan")}, {"k": float("inf")},
                                 {"window": 0}, {"window": "later"}, {"min_periods": 0},
                                 {"period": 20}])
def test_bollinger_params_reject(bad):
    with pytest.raises(ValidationError):
        BollingerParams(**bad)


# --------------------------------------------------------------------------- stream contract

CASES = [
    ("macd", {}),
    ("rsi", {"period": 14}),
    ("rsi", {"period": 3}),
    ("bollinger_bands", {"window": 20}),
    ("bollinger_bands", {"window": "30s", "k": 1.0}),
]
SPLIT_N = 600


@pytest.mark.parametrize("name, params", CASES)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, SPLIT_N - 1), max_size=6))
def test_split_invariance(name, params, splits):
    assert_split_invariant(name, {"price": PRICE[:SPLIT_N]}, splits=splits, keys=KEYS[:SPLIT_N],
                           ts=TS[:SPLIT_N], params=params)


@pytest.mark.parametrize("name, params", CASES)
@pytest.mark.parametrize("at", [1, 20, 150, 599])
def test_state_roundtrip(name, params, at):
    assert_state_roundtrip(name, {"price": PRICE[:SPLIT_N]}, at=at, keys=KEYS[:SPLIT_N],
                           ts=TS[:SPLIT_N], params=params)
