"""volatility kernels against pandas / numpy / plain loops written from KERNELS.md."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import SPAN_US, interleaved_keys, irregular_ts, per_key_valid
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 3000
RTOL = 1e-9
ATOL = 1e-12


def make_data(n: int = N, seed: int = 1) -> dict[str, np.ndarray]:
    """Interleaved keys (one appearing once), returns and prices with ~3% NaN, irregular ts
    (about 19 rows of a key per 30 s, so time-window rings must grow; 10% repeated stamps)."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    log_return = rng.normal(0.0, 0.01, n) * rng.choice([0.5, 1.0, 3.0], size=n)
    price = 60_000.0 + np.cumsum(rng.normal(0.0, 5.0, n))
    log_return[rng.random(n) < 0.03] = np.nan
    price[rng.random(n) < 0.03] = np.nan
    price[n // 2], log_return[n // 2] = 60_000.0, 0.004  # the key seen once has a valid row
    return {"keys": keys, "log_return": log_return, "price": price, "ts": irregular_ts(rng, n)}


DATA = make_data()


def pd_rolling(window, how: str, **kw):
    """pandas rolling statistic on one key's valid values: row or '30s' time window."""
    def f(x, ts):
        s = pd.Series(x, index=pd.to_datetime(ts, unit="us"))
        if isinstance(window, str):
            r = s.rolling(window, min_periods=2)
        else:
            r = s.reset_index(drop=True).rolling(window)
        return getattr(r, how)(**kw).to_numpy()
    return f


def ref_std_two_pass(window, min_periods=2):
    """Sample std of each window by numpy (two-pass), for price-level inputs where pandas'
    add/remove updates lose digits."""
    def f(x, ts):
        out = np.full(len(x), np.nan)
        for j in range(len(x)):
            if isinstance(window, int):
                w = x[max(0, j - window + 1): j + 1]
                ok = len(w) == window and window >= 2
            else:
                w = x[: j + 1][ts[: j + 1] > ts[j] - SPAN_US]
                ok = len(w) >= min_periods
            if ok:
                out[j] = np.std(w, ddof=1)
        return out
    return f


def ref_realized_var(window):
    stat = pd_rolling(window, "sum")
    return lambda x, ts: stat(x * x, ts)


def ref_bipower(window, min_periods=2):
    """Straight from the definition: pairs of consecutive valid returns, attached to the later
    one; row windows hold the last `window` pairs, time windows the pairs in (t - d, t]."""
    def f(x, ts):
        m = len(x)
        out = np.full(m, np.nan)
        pairs = [(j, abs(x[j]) * abs(x[j - 1])) for j in range(1, m)]
        for j in range(1, m):
            if isinstance(window, int):
                chosen = [p for i, p in pairs if j - window < i <= j]
                if len(chosen) < window:
                    continue
            else:
                chosen = [p for i, p in pairs if i <= j and ts[i] > ts[j] - SPAN_US]
                if len(chosen) < min_periods:
                    continue
            out[j] = math.pi / 2 * sum(chosen)
        return out
    return f


def ref_riskmetrics(lam):
    def f(x, ts):
        s2 = x[0] ** 2
        out = np.empty(len(x))
        for j, r in enumerate(x):
            s2 = r * r if j == 0 else lam * s2 + (1 - lam) * r * r
            out[j] = math.sqrt(s2)
        return out
    return f


def ref_riskmetrics_pandas(lam):
    def f(x, ts):
        return np.sqrt(pd.Series(x * x).ewm(alpha=1 - lam, adjust=False).mean().to_numpy())
    return f


def ref_autocorr(lag, window):
    def f(x, ts):
        out = np.full(len(x), np.nan)
        for j in range(lag + window - 1, len(x)):
            a = x[j - window + 1: j + 1]
            b = x[j - window + 1 - lag: j + 1 - lag]
            if np.ptp(a) == 0 or np.ptp(b) == 0:
                continue
            out[j] = np.corrcoef(a, b)[0, 1]
        return out
    return f


def ref_welford(which):
    def f(x, ts):
        e = pd.Series(x).expanding()
        return {"mean": e.mean(), "variance": e.var(), "stddev": e.std()}[which].to_numpy()
    return f


# (kernel, params, input column, output column, reference)
CASES = [
    ("realized_var", {}, "log_return", "realized_var", ref_realized_var(20)),
    ("realized_var", {"window": 7}, "log_return", "realized_var", ref_realized_var(7)),
    ("realized_var", {"window": "30s"}, "log_return", "realized_var", ref_realized_var("30s")),
    ("bipower_var", {}, "log_return", "bipower_var", ref_bipower(20)),
    ("bipower_var", {"window": 5}, "log_return", "bipower_var", ref_bipower(5)),
    ("bipower_var", {"window": "30s"}, "log_return", "bipower_var", ref_bipower("30s")),
    ("riskmetrics_vol", {}, "log_return", "riskmetrics_vol", ref_riskmetrics(0.94)),
    ("riskmetrics_vol", {"lambda": 0.8}, "log_return", "riskmetrics_vol",
     ref_riskmetrics_pandas(0.8)),
    ("rolling_std", {}, "log_return", "log_return_std20", pd_rolling(20, "std")),
    ("rolling_std", {"window": 2}, "price", "price_std2", ref_std_two_pass(2)),
    ("rolling_std", {"window": 1}, "price", "price_std1", ref_std_two_pass(1)),
    ("rolling_std", {"window": "30s"}, "log_return", "log_return_std30s",
     pd_rolling("30s", "std")),
    ("rolling_std", {"window": "30s"}, "price", "price_std30s", ref_std_two_pass("30s")),
    ("welford_mean_var", {}, "price", "mean", ref_welford("mean")),
    ("welford_mean_var", {}, "price", "variance", ref_welford("variance")),
    ("welford_mean_var", {}, "price", "stddev", ref_welford("stddev")),
    ("welford_mean_var", {}, "log_return", "variance", ref_welford("variance")),
    ("autocorr", {}, "log_return", "log_return_autocorr5", ref_autocorr(5, 100)),
    ("autocorr", {"lag": 1, "window": 10}, "log_return", "log_return_autocorr1",
     ref_autocorr(1, 10)),
    ("autocorr", {"lag": 3, "window": 30}, "price", "price_autocorr3", ref_autocorr(3, 30)),
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CASES]


def _atol(name, col):
    """Absolute tolerances on the scale of the statistic. Price-level windows keep shifted sums
    (kernels.window) whose error is about eps * (price drift since the last re-centring)^2 /
    std: ~1e-7 on a price-std of 1e-5 at 60,000 (1e-12 of the price), so their atol is scaled
    to the price; correlations live on [-1, 1]."""
    if name == "rolling_std" and col == "price":
        return 1e-6
    if name == "autocorr":
        return 1e-10
    return ATOL


def _run(name, params, col, data=DATA):
    return run_kernel(name, {col: data[col]}, inputs=[col], keys=data["keys"], ts=data["ts"],
                      params=params)


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES, ids=IDS)
def test_matches_reference_multi_key(name, params, col, out, ref):
    got = _run(name, params, col)[out]
    expected = per_key_valid(DATA["keys"], DATA[col], DATA["ts"], ref)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=_atol(name, col))
    if params.get("window") != 1:  # a one-value window has no sample std
        assert np.isfinite(got).sum() > N // 2


@pytest.mark.parametrize(("name", "params", "col", "out", "ref"), CASES, ids=IDS)
def test_keys_interleaved_row_by_row(name, params, col, out, ref):
    n = 600
    rng = np.random.default_rng(3)
    data = {"keys": np.array(["A", "B", "C"] * (n // 3)), "log_return": rng.normal(0, 0.01, n),
            "price": 100.0 + np.cumsum(rng.normal(0, 0.1, n)),
            "ts": np.cumsum(rng.integers(0, 2_000_000, n))}
    got = _run(name, params, col, data)[out]
    expected = per_key_valid(data["keys"], data[col], data["ts"], ref)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=_atol(name, col))


KERNEL_CASES = [("realized_var", {"window": 5}, "log_return"),
                ("realized_var", {"window": "30s"}, "log_return"),
                ("bipower_var", {"window": 5}, "log_return"),
                ("bipower_var", {"window": "30s"}, "log_return"),
                ("riskmetrics_vol", {"lambda": 0.9}, "log_return"),
                ("rolling_std", {"window": 5}, "log_return"),
                ("rolling_std", {"window": "30s"}, "price"),
                ("welford_mean_var", {}, "price"),
                ("autocorr", {"lag": 2, "window": 20}, "log_return")]
KIDS = [f"{n}-{p}" for n, p, _ in KERNEL_CASES]


@pytest.mark.parametrize(("name", "params", "col"), KERNEL_CASES, ids=KIDS)
def test_nan_input_leaves_state_unchanged(name, params, col):
    x = DATA[col]
    valid = ~np.isnan(x)
    full = _run(name, params, col)
    dropped = run_kernel(name, {col: x[valid]}, inputs=[col], keys=DATA["keys"][valid],
                         ts=DATA["ts"][valid], params=params)
    for out, values in full.items():
        np.testing.assert_array_equal(values[valid], dropped[out])
        assert np.isnan(values[~valid]).all()


@pytest.mark.parametrize(("name", "params", "col"), KERNEL_CASES, ids=KIDS)
def test_single_row_and_key_seen_once(name, params, col):
    got = run_kernel(name, {col: np.array([0.02])}, inputs=[col], params=params)
    for out, values in got.items():
        if name == "riskmetrics_vol" or out == "mean":
            assert values[0] == pytest.approx(0.02)
        else:
            assert np.isnan(values[0]), out
    once = DATA["keys"] == "ONCE"
    for out, values in _run(name, params, col).items():
        assert values[once].shape == (1,)
        if name != "riskmetrics_vol" and out != "mean":
            assert np.isnan(values[once]).all()


def test_constant_input():
    n = 300
    r = np.full(n, 0.003)
    rv = run_kernel("realized_var", {"log_return": r}, params={"window": 10})["realized_var"]
    assert np.isnan(rv[:9]).all()
    np.testing.assert_allclose(rv[9:], 10 * 0.003**2, rtol=1e-14)
    bv = run_kernel("bipower_var", {"log_return": r}, params={"window": 10})["bipower_var"]
    assert np.isnan(bv[:10]).all()
    np.testing.assert_allclose(bv[10:], math.pi / 2 * 10 * 0.003**2, rtol=1e-14)
    p = np.full(n, 60_123.25)
    sd = run_kernel("rolling_std", {"price": p}, inputs=["price"],
                    params={"window": 10})["price_std10"]
    assert (sd[9:] == 0.0).all()
    sd_t = run_kernel("rolling_std", {"price": p}, inputs=["price"],
                      params={"window": "30s"})["price_std30s"]
    assert np.isnan(sd_t[0]) and (sd_t[1:] == 0.0).all()
    w = run_kernel("welford_mean_var", {"price": p})
    assert (w["mean"] == 60_123.25).all()
    assert (w["variance"][1:] == 0.0).all() and (w["stddev"][1:] == 0.0).all()
    ac = run_kernel("autocorr", {"log_return": r}, params={"lag": 1, "window": 5})
    assert np.isnan(ac["log_return_autocorr1"]).all()  # std 0 -> NaN, never inf
    rm = run_kernel("riskmetrics_vol", {"log_return": r})["riskmetrics_vol"]
    np.testing.assert_allclose(rm, 0.003, rtol=1e-12)


def test_autocorr_constant_then_varying_window():
    # a constant stretch long enough to fill the window, then noise: NaN then finite
    rng = np.random.default_rng(5)
    x = np.concatenate([np.full(50, 0.001), rng.normal(0, 0.01, 400)])
    got = run_kernel("autocorr", {"log_return": x}, params={"lag": 2, "window": 20})
    expected = ref_autocorr(2, 20)(x, None)
    np.testing.assert_allclose(got["log_return_autocorr2"], expected, rtol=RTOL, atol=1e-10)
    assert np.isnan(got["log_return_autocorr2"][:50 + 2]).all()


def test_known_values():
    r = np.array([0.01, -0.02, 0.03])
    bv = run_kernel("bipower_var", {"log_return": r}, params={"window": 2})["bipower_var"]
    np.testing.assert_allclose(bv, [np.nan, np.nan, math.pi / 2 * (0.0002 + 0.0006)])
    rm = run_kernel("riskmetrics_vol", {"log_return": np.array([0.01, 0.0])},
                    params={"lambda": 0.5})["riskmetrics_vol"]
    np.testing.assert_allclose(rm, [0.01, math.sqrt(0.00005)])
    w = run_kernel("welford_mean_var", {"price": np.array([1.0, 2.0, 3.0])})
    np.testing.assert_allclose(w["variance"], [np.nan, 0.5, 1.0])
    ac = run_kernel("autocorr", {"log_return": np.array([1.0, 2.0, 3.0, 4.0])},
                    params={"lag": 1, "window": 3})
    np.testing.assert_allclose(ac["log_return_autocorr1"], [np.nan, np.nan, np.nan, 1.0])


def test_riskmetrics_lambda_alias():
    params = KERNELS.get("riskmetrics_vol").params
    p = params(**{"lambda": 0.9})
    assert p.lambda_ == 0.9
    assert params(lambda_=0.9) == p
    assert p.model_dump() == {"lambda": 0.9}
    assert params(**p.model_dump()) == p
    assert params().lambda_ == 0.94
    assert KERNELS.get("riskmetrics_vol").output_names(p, ["log_return"]) == ["riskmetrics_vol"]


def test_output_names():
    d = KERNELS.get("rolling_std")
    assert d.output_names(d.params(window="30s"), ["log_return"]) == ["log_return_std30s"]
    d = KERNELS.get("autocorr")
    assert d.output_names(d.params(), ["log_return"]) == ["log_return_autocorr5"]
    d = KERNELS.get("welford_mean_var")
    assert d.output_names(d.params(), ["price"]) == ["mean", "variance", "stddev"]


@pytest.mark.parametrize(("name", "bad"), [
    ("realized_var", {"window": 0}), ("realized_var", {"window": "abc"}),
    ("realized_var", {"min_periods": 0}), ("bipower_var", {"window": -3}),
    ("bipower_var", {"window": "0s"}), ("rolling_std", {"window": True}),
    ("riskmetrics_vol", {"lambda": 1.0}), ("riskmetrics_vol", {"lambda": -0.1}),
    ("riskmetrics_vol", {"lambda": 1.5}), ("riskmetrics_vol", {"alpha": 0.1}),
    ("autocorr", {"lag": 0}), ("autocorr", {"window": 1}), ("autocorr", {"window": "30s"}),
    ("welford_mean_var", {"window": 3}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


@pytest.mark.parametrize(("name", "params", "col"), KERNEL_CASES, ids=KIDS)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, col, splits):
    assert_split_invariant(name, {col: DATA[col]}, splits=splits, inputs=[col],
                           keys=DATA["keys"], ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params", "col"), KERNEL_CASES, ids=KIDS)
@pytest.mark.parametrize("at", [1, 40, N // 2, N - 1])
def test_state_roundtrip(name, params, col, at):
    assert_state_roundtrip(name, {col: DATA[col]}, at=at, inputs=[col], keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


def test_kernels_are_documented_numba_dispatchers():
    for name in ("realized_var", "bipower_var", "riskmetrics_vol", "rolling_std",
                 "welford_mean_var", "autocorr"):
        d = KERNELS.get(name)
        assert d.doc
        assert hasattr(d.fn, "py_func")
