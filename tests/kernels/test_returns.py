"""returns kernels against pandas / plain loops: log_returns, simple_returns, lag, diff, pnl."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts, per_key_valid
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 3000
RTOL = 1e-9
ATOL = 1e-13


def make_data(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """Interleaved keys (one appearing once), random-walk prices, ~3% NaN, irregular ts."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    steps = rng.normal(0.0, 0.01, n)
    price = np.empty(n)
    for k in np.unique(keys):
        m = keys == k
        price[m] = 100.0 * np.exp(np.cumsum(steps[m]))
    log_return = rng.normal(0.0, 0.01, n)
    price[rng.random(n) < 0.03] = np.nan
    log_return[rng.random(n) < 0.03] = np.nan
    price[n // 2], log_return[n // 2] = 101.0, 0.004  # the key seen once has a valid row
    return {"keys": keys, "price": price, "log_return": log_return, "ts": irregular_ts(rng, n)}


DATA = make_data()


def ref_log_returns(p: np.ndarray) -> np.ndarray:
    s = pd.Series(p)
    return np.log(s / s.shift(1)).to_numpy()


def ref_simple_returns(p: np.ndarray) -> np.ndarray:
    s = pd.Series(p)
    return (s / s.shift(1) - 1.0).to_numpy()


def ref_lag(k: int):
    def f(x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        for j in range(k, len(x)):
            out[j] = x[j - k]
        return out
    return f


def ref_diff(k: int):
    return lambda x: pd.Series(x).diff(k).to_numpy()


def ref_pnl(x: np.ndarray) -> np.ndarray:
    total = 0.0
    out = np.empty(len(x))
    for j, v in enumerate(x):
        total += v
        out[j] = total
    return out


CASES = [
    ("log_returns", {}, "price", "log_return", ref_log_returns),
    ("simple_returns", {}, "price", "return", ref_simple_returns),
    ("lag", {}, "log_return", "log_return_lag1", ref_lag(1)),
    ("lag", {"k": 3}, "log_return", "log_return_lag3", ref_lag(3)),
    ("diff", {}, "price", "price_diff1", ref_diff(1)),
    ("diff", {"k": 4}, "price", "price_diff4", ref_diff(4)),
    ("pnl", {}, "log_return", "pnl", ref_pnl),
]


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES)
def test_matches_reference_multi_key(name, params, col, out, ref):
    got = run_kernel(name, {col: DATA[col]}, keys=DATA["keys"], ts=DATA["ts"], params=params)
    assert list(got) == [out]
    expected = per_key_valid(DATA["keys"], DATA[col], DATA["ts"], lambda v, _: ref(v))
    np.testing.assert_allclose(got[out], expected, rtol=RTOL, atol=ATOL)
    assert np.isnan(got[out][np.isnan(DATA[col])]).all()
    once = got[out][DATA["keys"] == "ONCE"]
    assert once.shape == (1,)
    if name == "pnl":
        assert once[0] == DATA[col][N // 2]
    else:  # the key that appears once has no earlier row
        assert np.isnan(once[0])


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES)
def test_keys_interleaved_row_by_row(name, params, col, out, ref):
    n = 400
    keys = np.array(["A", "B"] * (n // 2))
    rng = np.random.default_rng(7)
    x = 50.0 + np.cumsum(rng.normal(0, 0.5, n))
    got = run_kernel(name, {col: x}, keys=keys, params=params)[out]
    expected = per_key_valid(keys, x, np.zeros(n), lambda v, _: ref(v))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES)
def test_nan_input_leaves_state_unchanged(name, params, col, out, ref):
    x = DATA[col]
    valid = ~np.isnan(x)
    full = run_kernel(name, {col: x}, keys=DATA["keys"], ts=DATA["ts"], params=params)[out]
    dropped = run_kernel(name, {col: x[valid]}, keys=DATA["keys"][valid], ts=DATA["ts"][valid],
                         params=params)[out]
    np.testing.assert_array_equal(full[valid], dropped)
    assert np.isnan(full[~valid]).all()


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES)
def test_single_row(name, params, col, out, ref):
    got = run_kernel(name, {col: np.array([0.01])}, params=params)[out]
    assert got.shape == (1,)
    if name == "pnl":
        assert got[0] == 0.01
    else:
        assert np.isnan(got[0])


def test_constant_prices():
    p = np.full(50, 123.45)
    assert (run_kernel("log_returns", {"price": p})["log_return"][1:] == 0.0).all()
    assert (run_kernel("simple_returns", {"price": p})["return"][1:] == 0.0).all()
    d = run_kernel("diff", {"price": p}, params={"k": 2})["price_diff2"]
    assert np.isnan(d[:2]).all() and (d[2:] == 0.0).all()


def test_known_values():
    p = np.array([100.0, 110.0, np.nan, 121.0])
    r = run_kernel("log_returns", {"price": p})["log_return"]
    np.testing.assert_allclose(r, [np.nan, np.log(1.1), np.nan, np.log(1.1)], rtol=1e-15)
    s = run_kernel("simple_returns", {"price": p})["return"]
    np.testing.assert_allclose(s, [np.nan, 0.1, np.nan, 0.1], rtol=1e-12)
    x = np.array([1.0, 2.0, 3.0, np.nan, 4.0])
    np.testing.assert_array_equal(run_kernel("lag", {"log_return": x})["log_return_lag1"],
                                  [np.nan, 1.0, 2.0, np.nan, 3.0])
    np.testing.assert_array_equal(run_kernel("pnl", {"log_return": x})["pnl"],
                                  [1.0, 3.0, 6.0, np.nan, 10.0])


def test_zero_price_gives_nan_not_inf():
    p = np.array([100.0, 0.0, 100.0, -5.0])
    r = run_kernel("log_returns", {"price": p})["log_return"]
    s = run_kernel("simple_returns", {"price": p})["return"]
    assert not np.isinf(r).any() and not np.isinf(s).any()
    assert np.isnan(r).all()
    np.testing.assert_array_equal(s, [np.nan, -1.0, np.nan, -1.05])


def test_output_names_follow_input_and_k():
    x = np.arange(5.0)
    assert list(run_kernel("lag", {"mid": x}, inputs=["mid"], params={"k": 2})) == ["mid_lag2"]
    assert list(run_kernel("diff", {"price": x}, params={"k": 3})) == ["price_diff3"]


@pytest.mark.parametrize("name", ["lag", "diff"])
@pytest.mark.parametrize("bad", [{"k": 0}, {"k": -1}, {"k": "x"}, {"window": 3}])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


@pytest.mark.parametrize("name", ["log_returns", "simple_returns", "pnl"])
def test_no_params_accepted(name):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(window=3)


SPLIT_CASES = [(c[0], c[1], c[2]) for c in CASES]


@pytest.mark.parametrize(("name", "params", "col"), SPLIT_CASES)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, col, splits):
    assert_split_invariant(name, {col: DATA[col]}, splits=splits, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params", "col"), SPLIT_CASES)
@pytest.mark.parametrize("at", [1, 7, N // 3, N - 1])
def test_state_roundtrip(name, params, col, at):
    assert_state_roundtrip(name, {col: DATA[col]}, at=at, keys=DATA["keys"], ts=DATA["ts"],
                           params=params)


def test_kernels_are_documented_numba_dispatchers():
    for name in ("log_returns", "simple_returns", "lag", "diff", "pnl"):
        d = KERNELS.get(name)
        assert d.doc
        assert hasattr(d.fn, "py_func")
