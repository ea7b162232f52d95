"""ewma, ema, sma and rolling_zscore against pandas, TA-Lib and plain loops (KERNELS.md)."""

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
from tickflow.kernels.averages import EmaParams, EwmaParams, SmaParams, ZscoreParams

N = 3000


def make_ticks(n: int = N, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved keys (random order), irregular increasing timestamps (us), prices per key
    around very different levels (precision matters near 60,000)."""
    rng = np.random.default_rng(seed)
    keys, ts = symbol_keys_and_ts(rng, n)
    return keys, ts, level_walk(rng, keys)


KEYS, TS, PRICE = make_ticks()
ROWS_IN_BURST = 80  # rows 1 us apart: ~27 per key, so a 30s window grows its ring past 16
TS_BURST = with_burst(TS, 100, ROWS_IN_BURST)


def ema_loop(x: np.ndarray, alpha: float) -> np.ndarray:
    """The KERNELS.md EMA family, row by row: m_0 = x_0; m_t = a x_t + (1 - a) m_{t-1}."""
    out = np.empty(len(x))
    m = np.nan
    for i, v in enumerate(x):
        m = v if np.isnan(m) else alpha * v + (1 - alpha) * m
        out[i] = m
    return out


def assert_nan_rows_leave_state(name: str, data: dict[str, np.ndarray], keys: np.ndarray,
                                ts: np.ndarray, params: dict | None = None,
                                every: int = 7) -> None:
    """A NaN input row outputs NaN and the other rows equal a run without those rows."""
    bad = np.zeros(len(keys), dtype=bool)
    bad[3::every] = True
    holed = {c: np.where(bad, np.nan, v) for c, v in data.items()}
    with_nan = run_kernel(name, holed, keys=keys, ts=ts, params=params)
    without = run_kernel(name, {c: v[~bad] for c, v in data.items()}, keys=keys[~bad],
                         ts=ts[~bad], params=params)
    for col, got in with_nan.items():
        assert np.isnan(got[bad]).all(), col
        np.testing.assert_array_equal(got[~bad], without[col], err_msg=col)


# --------------------------------------------------------------------------- ewma / ema


@pytest.mark.parametrize("params, alpha", [
    ({}, 0.06),
    ({"alpha": 0.3}, 0.3),
    ({"span": 20}, 2 / 21),
    ({"half_life": 5}, 1 - 0.5 ** (1 / 5)),
])
def test_ewma_matches_pandas_and_loop(params, alpha):
    got = run_kernel("ewma", {"price": PRICE}, keys=KEYS, params=params)["ewma"]
    pandas_ref = per_key(KEYS, lambda x: pd.Series(x).ewm(alpha=alpha, adjust=False).mean(),
                         PRICE)
    np.testing.assert_allclose(got, pandas_ref, rtol=1e-12)
    np.testing.assert_array_equal(got, per_key(KEYS, lambda x: ema_loop(x, alpha), PRICE))


@pytest.mark.parametrize("params, pandas_kw", [
    ({}, {"span": 12}),
    ({"span": 26}, {"span": 26}),
    ({"alpha": 0.2}, {"alpha": 0.2}),
    ({"half_life": 10}, {"halflife": 10}),
])
def test_ema_matches_pandas(params, pandas_kw):
    got = run_kernel("ema", {"price": PRICE}, keys=KEYS, params=params)["ema"]
    ref = per_key(KEYS, lambda x: pd.Series(x).ewm(adjust=False, **pandas_kw).mean(), PRICE)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("span", [5, 12, 30])
def test_ema_matches_talib_where_seeds_coincide(span):
    # TA-Lib seeds its EMA with the SMA of the first `span` values, the EMA family with the
    # first value. Starting a series with `span` copies of its first value makes the two seeds
    # equal, so from row span - 1 on both compute the same recursion.
    x = np.r_[np.full(span - 1, PRICE[0]), PRICE[:500]]
    got = run_kernel("ema", {"price": x}, params={"span": span})["ema"]
    ref = talib.EMA(x, timeperiod=span)
    np.testing.assert_allclose(got[span - 1:], ref[span - 1:], rtol=1e-12)
    np.testing.assert_allclose(got[: span - 1], x[: span - 1], rtol=1e-14)


def test_ewma_first_row_and_single_row():
    assert run_kernel("ewma", {"price": [5.0]})["ewma"].tolist() == [5.0]
    assert run_kernel("ewma", {"price": [1.0, 2.0]}, params={"alpha": 0.5})["ewma"].tolist() \
        == [1.0, 1.5]


def test_ema_constant_prices_stay_constant():
    got = run_kernel("ema", {"price": np.full(50, 123.45)})["ema"]
    # alpha x + (1 - alpha) m may round away from x by an ulp or so
    np.testing.assert_allclose(got, np.full(50, 123.45), rtol=1e-14)


def test_ema_keys_interleaved_row_by_row_are_independent():
    keys = np.tile(["a", "b"], 100)
    x = np.where(keys == "a", 1.0, 1000.0) + np.arange(200)
    got = run_kernel("ema", {"price": x}, keys=keys, params={"span": 9})["ema"]
    for s in ("a", "b"):
        m = keys == s
        np.testing.assert_array_equal(got[m], run_kernel("ema", {"price": x[m]},
                                                         params={"span": 9})["ema"])


@pytest.mark.parametrize("name", ["ewma", "ema"])
def test_ema_family_nan_leaves_state_unchanged(name):
    assert_nan_rows_leave_state(name, {"price": PRICE}, KEYS, TS)
    leading = run_kernel(name, {"price": [np.nan, 2.0, 4.0]}, params={"alpha": 0.5})[name]
    np.testing.assert_array_equal(leading, [np.nan, 2.0, 3.0])


@pytest.mark.parametrize("bad", [
    {"alpha": 0.1, "span": 5},
    {"alpha": 0.1, "half_life": 3},
    {"span": 5, "half_life": 3},
    {"alpha": 0.1, "span": 5, "half_life": 3},
    {"alpha": 0.0},
    {"alpha": 1.5},
    {"alpha": -0.1},
    {"span": 0.5},
    {"half_life": 0},
    {"half_life": -2},
    {"beta": 0.3},
])
@pytest.mark.parametrize("model", [EwmaParams, EmaParams])
def test_alpha_params_rejects(model, bad):
    with pytest.raises(ValidationError):
        model(**bad)


def test_alpha_params_exactly_one_message():
    with pytest.raises(ValidationError, match="exactly one of alpha, span, half_life"):
        EwmaParams(alpha=0.1, span=10)
    assert EwmaParams(alpha=1.0).kernel_alpha() == 1.0
    assert EmaParams().kernel_alpha() == 2 / 13


# --------------------------------------------------------------------------- sma


@pytest.mark.parametrize("window", [1, 5, 20])
def test_sma_rows_matches_pandas_and_talib(window):
    got = run_kernel("sma", {"price": PRICE}, keys=KEYS, params={"window": window})["sma"]
    ref = per_key(KEYS, lambda x: pd.Series(x).rolling(window).mean(), PRICE)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    ta = per_key(KEYS, lambda x: talib.SMA(x, timeperiod=window), PRICE)
    np.testing.assert_allclose(got, ta, rtol=1e-12)
    assert np.array_equal(np.isnan(got), np.isnan(ref))


@pytest.mark.parametrize("window, min_periods", [("30s", 2), ("10s", 1), ("1m", 3)])
def test_sma_time_window_matches_pandas(window, min_periods):
    got = run_kernel("sma", {"price": PRICE}, keys=KEYS, ts=TS_BURST,
                     params={"window": window, "min_periods": min_periods})["sma"]

    def ref(x, t):
        s = pd.Series(x, index=pd.to_datetime(t, unit="us"))
        return s.rolling(window.replace("m", "min") if window.endswith("m") else window,
                         min_periods=min_periods).mean().to_numpy()

    expected = per_key(KEYS, ref, PRICE, TS_BURST)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_sma_time_window_is_half_open():
    # (t - 2s, t]: at t = 2 s the row at 0 has left; at 2.5 s the rows at 1, 2 and 2.5 s remain.
    ts = np.array([0, 1_000_000, 2_000_000, 2_500_000])
    got = run_kernel("sma", {"price": [1.0, 2.0, 4.0, 8.0]}, ts=ts,
                     params={"window": "2s", "min_periods": 1})["sma"]
    np.testing.assert_allclose(got, [1.0, 1.5, 3.0, 14 / 3], rtol=1e-15)


def test_sma_edge_cases():
    assert np.isnan(run_kernel("sma", {"price": [1.0]}, params={"window": 2})["sma"]).all()
    got = run_kernel("sma", {"price": np.full(30, 60_000.01)}, params={"window": 20})["sma"]
    np.testing.assert_allclose(got[19:], 60_000.01, rtol=1e-15)
    # a key that appears once stays NaN while the other warms up
    keys = np.array(["a"] * 5 + ["b"] + ["a"] * 5)
    got = run_kernel("sma", {"price": np.arange(11.0)}, keys=keys, params={"window": 3})["sma"]
    assert np.isnan(got[5])
    np.testing.assert_allclose(got[keys == "a"][2:], [1, 2, 3, 13 / 3, 17 / 3, 7, 8, 9],
                               rtol=1e-15)


# --------------------------------------------------------------------------- rolling_zscore


@pytest.mark.parametrize("window", [5, 100])
def test_zscore_rows_matches_pandas(window):
    got = run_kernel("rolling_zscore", {"price": PRICE}, keys=KEYS,
                     params={"window": window})["zscore"]

    def ref(x):
        s = pd.Series(x).rolling(window)
        z = ((x - s.mean()) / s.std(ddof=1)).to_numpy()
        # pandas may leave a rounding residue in the std of a constant window; KERNELS.md: NaN
        return np.where((s.max() == s.min()).to_numpy(), np.nan, z)

    np.testing.assert_allclose(got, per_key(KEYS, ref, PRICE), rtol=1e-7, atol=1e-9)


def test_zscore_time_window_matches_pandas():
    got = run_kernel("rolling_zscore", {"price": PRICE}, keys=KEYS, ts=TS_BURST,
                     params={"window": "30s"})["zscore"]

    def ref(x, t):
        s = pd.Series(x, index=pd.to_datetime(t, unit="us")).rolling("30s", min_periods=2)
        constant = (s.max() == s.min()).to_numpy()
        std = np.where(constant, np.nan, s.std().to_numpy())
        return (x - s.mean().to_numpy()) / std

    np.testing.assert_allclose(got, per_key(KEYS, ref, PRICE, TS_BURST), rtol=1e-7, atol=1e-9)


def test_zscore_is_nan_when_std_is_zero():
    x = np.r_[np.full(10, 100.0), 101.0]
    got = run_kernel("rolling_zscore", {"price": x}, params={"window": 5})["zscore"]
    assert np.isnan(got[:10]).all()
    z = (101.0 - 100.2) / np.std([100.0] * 4 + [101.0], ddof=1)
    np.testing.assert_allclose(got[10], z, rtol=1e-12)
    assert np.isfinite(got).sum() == 1


@pytest.mark.parametrize("name", ["sma", "rolling_zscore"])
@pytest.mark.parametrize("window", [10, "30s"])
def test_rolling_nan_leaves_state_unchanged(name, window):
    assert_nan_rows_leave_state(name, {"price": PRICE}, KEYS, TS_BURST, {"window": window})


@pytest.mark.parametrize("model", [SmaParams, ZscoreParams])
@pytest.mark.parametrize("bad", [{"window": 0}, {"window": -3}, {"window": "soon"},
                                 {"window": "0s"}, {"window": True}, {"window": 2.5},
                                 {"min_periods": 0}, {"span": 3}])
def test_window_params_reject(model, bad):
    with pytest.raises(ValidationError):
        model(**bad)


def test_window_params_accept_durations():
    assert SmaParams(window="30s").window == "30s"
    assert SmaParams(window="15").window == 15
    assert ZscoreParams().window == 100


# --------------------------------------------------------------------------- stream contract

CASES = [
    ("ewma", {}),
    ("ewma", {"half_life": 3}),
    ("ema", {"span": 7}),
    ("sma", {"window": 7}),
    ("sma", {"window": "30s"}),
    ("rolling_zscore", {"window": 15}),
    ("rolling_zscore", {"window": "20s", "min_periods": 3}),
]
SPLIT_N = 600


@pytest.mark.parametrize("name, params", CASES)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, SPLIT_N - 1), max_size=6))
def test_split_invariance(name, params, splits):
    assert_split_invariant(name, {"price": PRICE[:SPLIT_N]}, splits=splits, keys=KEYS[:SPLIT_N],
                           ts=TS_BURST[:SPLIT_N], params=params)


@pytest.mark.parametrize("name, params", CASES)
@pytest.mark.parametrize("at", [1, 120, 599])
def test_state_roundtrip(name, params, at):
    assert_state_roundtrip(name, {"price": PRICE[:SPLIT_N]}, at=at, keys=KEYS[:SPLIT_N],
                           ts=TS_BURST[:SPLIT_N], params=params)
