"""statistics kernels against pandas / TA-Lib / plain loops written from KERNELS.md."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts, windows
from tests.kernels.data import per_key_all_valid as per_key
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 2000
RTOL = 1e-9
MEDRV_C = math.pi / (6 - 4 * math.sqrt(3) + math.pi)


def make_data(n: int = N, seed: int = 11) -> dict[str, np.ndarray]:
    """Interleaved keys (one seen once), ~3% NaN per column, irregular timestamps (about 19
    rows of a key per 30 s so time-window rings grow; 10% repeated stamps)."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    r = rng.standard_t(4, n) * 0.004
    price = 60_000.0 + np.cumsum(rng.normal(0.0, 5.0, n))
    price[rng.random(n) < 0.05] = 60_000.0  # ties in sorted windows
    x = rng.normal(0.0, 0.01, n)
    y = 0.5 * x + rng.normal(0.0, 0.01, n)
    close = 100.0 + np.cumsum(rng.normal(0.0, 0.5, n))
    high = close + np.abs(rng.normal(0.0, 0.4, n))
    low = close - np.abs(rng.normal(0.0, 0.4, n))
    equity = 1.0 + np.cumsum(rng.normal(0.0, 0.01, n))
    data = {"log_return": r, "price": price, "x": x, "y": y, "high": high, "low": low,
            "close": close, "equity": equity}
    for col in data.values():
        col[rng.random(n) < 0.03] = np.nan
        col[n // 2] = 1.0
    data["ts"] = irregular_ts(rng, n)
    data["keys"] = keys
    return data


DATA = make_data()


def _series(x, ts, window):
    if isinstance(window, str):
        return pd.Series(x, index=pd.to_datetime(ts, unit="us"))
    return pd.Series(x)


def _roll(s, window):
    return s.rolling(window, min_periods=2) if isinstance(window, str) else s.rolling(window)


def pd_stat(col, window, how):
    def f(d, ts):
        return getattr(_roll(_series(d[col], ts, window), window), how)().to_numpy()
    return f


def pd_pair(window, how):
    def f(d, ts):
        sx, sy = _series(d["x"], ts, window), _series(d["y"], ts, window)
        if how == "corr":
            return _roll(sx, window).corr(sy).to_numpy()
        return (_roll(sx, window).cov(sy) / _roll(sy, window).var()).to_numpy()
    return f


def ref_donchian_mid(window):
    def f(d, ts):
        out = np.full(len(ts), np.nan)
        for j, w in windows(d["price"], ts, window):
            out[j] = (w.max() + w.min()) / 2
        return out
    return f


def ref_ewcov(alpha):
    def f(d, ts):
        x, y = d["x"], d["y"]
        out = np.empty(len(x))
        mx, my, c = x[0], y[0], 0.0
        out[0] = 0.0
        for j in range(1, len(x)):
            c = (1 - alpha) * (c + alpha * (x[j] - mx) * (y[j] - my))
            mx = alpha * x[j] + (1 - alpha) * mx
            my = alpha * y[j] + (1 - alpha) * my
            out[j] = c
        return out
    return f


def ref_medrv(window, min_periods=2):
    def f(d, ts):
        out = np.full(len(ts), np.nan)
        for j, w in windows(d["log_return"], ts, window, min_periods):
            n = len(w)
            if n < 3:
                continue
            a = np.abs(w)
            total = sum(float(np.median(a[i - 1: i + 2])) ** 2 for i in range(1, n - 1))
            out[j] = MEDRV_C * n / (n - 2) * total
        return out
    return f


def ref_stoch(k, d_rows, which):
    def f(d, ts):
        h, lo, c = d["high"], d["low"], d["close"]
        m = len(c)
        kv = np.full(m, np.nan)
        dv = np.full(m, np.nan)
        for j in range(k - 1, m):
            hh, ll = h[j - k + 1: j + 1].max(), lo[j - k + 1: j + 1].min()
            kv[j] = 100 * (c[j] - ll) / (hh - ll) if hh != ll else np.nan
        for j in range(k + d_rows - 2, m):
            dv[j] = np.mean(kv[j - d_rows + 1: j + 1])
        return kv if which == "k" else dv
    return f


def ref_kalman(q, r):
    """The local-level filter in information form: the posterior precision
    is the predicted precision 1 / (P + q) plus the measurement's 1 / r, and the estimate the
    precision-weighted mean of the prediction and the measurement (independent of the
    kernel's gain form K = P / (P + r)), in 40-digit decimals."""
    fq, fr = Decimal(q), Decimal(r)

    def f(d, ts):
        with localcontext(prec=40):
            return walk(d["price"])

    def walk(z):
        out = np.empty(len(z))
        x, p = Decimal(z[0]), Decimal(1)
        out[0] = float(x)
        for j in range(1, len(z)):
            w_prior = 1 / (p + fq)
            w_meas = 1 / fr
            p = 1 / (w_prior + w_meas)
            x = (w_prior * x + w_meas * Decimal(z[j])) * p
            out[j] = float(x)
        return out
    return f


def ref_cf(alpha, window):
    z = NormalDist().inv_cdf(alpha)

    def f(d, ts):
        r = _roll(_series(d["log_return"], ts, window), window)
        mean, std = r.mean().to_numpy(), r.std().to_numpy()
        s, k = r.skew().to_numpy(), r.kurt().to_numpy()
        zcf = (z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24
               - (2 * z**3 - 5 * z) * s**2 / 36)
        return -(mean + zcf * std)
    return f


def ref_outlier(window, k):
    def f(d, ts):
        x = d["price"]
        out = np.zeros(len(x))
        for j, w in windows(x, ts, window):
            med = np.median(w)
            mad = np.median(np.abs(w - med))
            out[j] = float(abs(x[j] - med) > k * 1.4826 * mad)
        return out
    return f


def ref_drawdown(which):
    def f(d, ts):
        e = pd.Series(d["equity"])
        dd = e - e.cummax()
        return (dd if which == "drawdown" else dd.cummin()).to_numpy()
    return f


# (kernel, params, inputs, output column, reference, atol)
CASES = [
    ("rolling_min", {}, ["price"], "price_min20", pd_stat("price", 20, "min"), 0),
    ("rolling_min", {"window": "30s"}, ["price"], "price_min30s",
     pd_stat("price", "30s", "min"), 0),
    ("rolling_max", {"window": 7}, ["price"], "price_max7", pd_stat("price", 7, "max"), 0),
    ("rolling_max", {"window": "30s"}, ["log_return"], "log_return_max30s",
     pd_stat("price", "30s", "max"), 0),
    ("rolling_skew", {}, ["log_return"], "log_return_skew100",
     pd_stat("log_return", 100, "skew"), 1e-9),
    ("rolling_skew", {"window": 10}, ["log_return"], "log_return_skew10",
     pd_stat("log_return", 10, "skew"), 1e-9),
    ("rolling_skew", {"window": "30s"}, ["log_return"], "log_return_skew30s",
     pd_stat("log_return", "30s", "skew"), 1e-9),
    ("rolling_kurt", {}, ["log_return"], "log_return_kurt100",
     pd_stat("log_return", 100, "kurt"), 1e-8),
    ("rolling_kurt", {"window": 12}, ["log_return"], "log_return_kurt12",
     pd_stat("log_return", 12, "kurt"), 1e-8),
    ("rolling_kurt", {"window": "30s"}, ["log_return"], "log_return_kurt30s",
     pd_stat("log_return", "30s", "kurt"), 1e-8),
    ("rolling_corr", {}, ["x", "y"], "corr", pd_pair(100, "corr"), 1e-10),
    ("rolling_corr", {"window": "30s"}, ["x", "y"], "corr", pd_pair("30s", "corr"), 1e-10),
    ("rolling_beta", {"window": 15}, ["x", "y"], "beta", pd_pair(15, "beta"), 1e-10),
    ("rolling_beta", {"window": "30s"}, ["x", "y"], "beta", pd_pair("30s", "beta"), 1e-10),
    ("ewcov", {}, ["x", "y"], "ewcov", ref_ewcov(0.06), 1e-15),
    ("ewcov", {"span": 9}, ["x", "y"], "ewcov", ref_ewcov(0.2), 1e-15),
    ("medrv", {}, ["log_return"], "medrv", ref_medrv(20), 1e-15),
    ("medrv", {"window": "30s"}, ["log_return"], "medrv", ref_medrv("30s"), 1e-15),
    ("medrv", {"window": "30s", "min_periods": 5}, ["log_return"], "medrv",
     ref_medrv("30s", 5), 1e-15),
    ("donchian_channel", {}, ["price"], "dc_high", pd_stat("price", 20, "max"), 0),
    ("donchian_channel", {"window": "30s"}, ["price"], "dc_low",
     pd_stat("price", "30s", "min"), 0),
    ("donchian_channel", {"window": "30s"}, ["price"], "dc_mid", ref_donchian_mid("30s"), 0),
    ("stochastic_osc", {}, ["high", "low", "close"], "stoch_k", ref_stoch(14, 3, "k"), 1e-9),
    ("stochastic_osc", {}, ["high", "low", "close"], "stoch_d", ref_stoch(14, 3, "d"), 1e-9),
    ("stochastic_osc", {"k": 5, "d": 4}, ["high", "low", "close"], "stoch_d",
     ref_stoch(5, 4, "d"), 1e-9),
    ("kalman_1d", {}, ["price"], "kalman", ref_kalman(1e-5, 1e-2), 1e-9),
    ("kalman_1d", {"q": 0.1, "r": 2.0}, ["price"], "kalman", ref_kalman(0.1, 2.0), 1e-9),
    ("cornish_fisher_var", {}, ["log_return"], "cf_var", ref_cf(0.05, 100), 1e-10),
    ("cornish_fisher_var", {"alpha": 0.01, "window": "30s"}, ["log_return"], "cf_var",
     ref_cf(0.01, "30s"), 1e-10),
    ("outlier_flag_mad", {"k": 1.5}, ["price"], "outlier", ref_outlier(100, 1.5), 0),
    ("outlier_flag_mad", {"window": 9, "k": 1.0}, ["price"], "outlier", ref_outlier(9, 1.0),
     0),
    ("outlier_flag_mad", {"window": "30s", "k": 2.0}, ["log_return"], "outlier",
     ref_outlier("30s", 2.0), 0),
    ("drawdown", {}, ["equity"], "drawdown", ref_drawdown("drawdown"), 0),
    ("drawdown", {}, ["equity"], "max_drawdown", ref_drawdown("max"), 0),
]
IDS = [f"{c[0]}-{c[1]}-{c[3]}" for c in CASES]


def _run(name, params, cols, data=DATA):
    """Run with the data's columns fed to the kernel's inputs in order."""
    return run_kernel(name, {c: data[c] for c in cols}, inputs=cols, keys=data["keys"],
                      ts=data["ts"], params=params)


def _expected(name, cols, ref, data):
    """The reference on each key's valid rows; references read the kernel's input names."""
    d = KERNELS.get(name)
    renamed = dict(data)
    for inp, c in zip(d.inputs, cols, strict=True):
        renamed[inp] = data[c]
    return per_key(renamed, list(d.inputs), ref)


def _compare(name, got, expected, atol):
    if got.dtype == np.int8:
        filled = np.where(np.isnan(expected), 0, expected)
        np.testing.assert_array_equal(got, filled.astype(np.int8))
    else:
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=atol)


@pytest.mark.parametrize(("name", "params", "cols", "out", "ref", "atol"), CASES, ids=IDS)
def test_matches_reference_multi_key(name, params, cols, out, ref, atol):
    got = _run(name, params, cols)[out]
    expected = _expected(name, cols, ref, DATA)
    _compare(name, got, expected, atol)
    if got.dtype == np.int8:
        assert 0 < got.sum() < N // 2
    else:
        assert np.isfinite(got).sum() > N // 2


@pytest.mark.parametrize(("name", "params", "cols", "out", "ref", "atol"), CASES, ids=IDS)
def test_keys_interleaved_row_by_row(name, params, cols, out, ref, atol):
    n = 450
    data = make_data(n, seed=4)
    data["keys"] = np.array(["A", "B", "C"] * (n // 3))
    data["ts"] = np.cumsum(np.random.default_rng(5).integers(0, 2_000_000, n))
    got = _run(name, params, cols, data)[out]
    _compare(name, got, _expected(name, cols, ref, data), atol)


def test_rolling_min_max_match_talib():
    x = DATA["price"]
    m = (DATA["keys"] == "BTC") & ~np.isnan(x)
    flat = x[m]
    lo = run_kernel("rolling_min", {"price": flat}, params={"window": 12})["price_min12"]
    hi = run_kernel("rolling_max", {"price": flat}, params={"window": 12})["price_max12"]
    np.testing.assert_array_equal(lo, talib.MIN(flat, 12))
    np.testing.assert_array_equal(hi, talib.MAX(flat, 12))


@pytest.mark.parametrize(("k", "d"), [(14, 3), (5, 1), (3, 5)])
def test_stochastic_matches_talib_stochf(k, d):
    m = DATA["keys"] == "ETH"
    for c in ("high", "low", "close"):
        m &= ~np.isnan(DATA[c])
    h, lo, c = (DATA[col][m] for col in ("high", "low", "close"))
    got = run_kernel("stochastic_osc", {"high": h, "low": lo, "close": c},
                     params={"k": k, "d": d})
    fk, fd = talib.STOCHF(h, lo, c, fastk_period=k, fastd_period=d, fastd_matype=0)
    start = k + d - 2  # TA-Lib starts both outputs at its %D lookback
    np.testing.assert_allclose(got["stoch_k"][start:], fk[start:], rtol=1e-10)
    np.testing.assert_allclose(got["stoch_d"], fd, rtol=1e-10)
    assert np.isnan(got["stoch_k"][: k - 1]).all() and np.isfinite(got["stoch_k"][k - 1])


KERNEL_CASES = [
    ("rolling_min", {"window": 5}, ["price"]),
    ("rolling_max", {"window": "30s"}, ["price"]),
    ("rolling_skew", {"window": 10}, ["log_return"]),
    ("rolling_skew", {"window": "30s"}, ["log_return"]),
    ("rolling_kurt", {"window": "30s"}, ["log_return"]),
    ("rolling_corr", {"window": 10}, ["x", "y"]),
    ("rolling_corr", {"window": "30s"}, ["x", "y"]),
    ("rolling_beta", {"window": "30s"}, ["x", "y"]),
    ("ewcov", {"alpha": 0.3}, ["x", "y"]),
    ("medrv", {"window": 6}, ["log_return"]),
    ("medrv", {"window": "30s"}, ["log_return"]),
    ("donchian_channel", {"window": "30s"}, ["price"]),
    ("stochastic_osc", {"k": 5, "d": 3}, ["high", "low", "close"]),
    ("kalman_1d", {}, ["price"]),
    ("cornish_fisher_var", {"window": 20}, ["log_return"]),
    ("cornish_fisher_var", {"window": "30s"}, ["log_return"]),
    ("outlier_flag_mad", {"window": 15, "k": 1.0}, ["price"]),
    ("outlier_flag_mad", {"window": "30s", "k": 1.0}, ["price"]),
    ("drawdown", {}, ["equity"]),
]
KIDS = [f"{n}-{p}" for n, p, _ in KERNEL_CASES]


def _feed(name, cols, data, mask=None):
    return {c: (data[c] if mask is None else data[c][mask]) for c in cols}


@pytest.mark.parametrize(("name", "params", "cols"), KERNEL_CASES, ids=KIDS)
def test_nan_input_leaves_state_unchanged(name, params, cols):
    valid = np.ones(N, dtype=bool)
    for c in cols:
        valid &= ~np.isnan(DATA[c])
    assert (~valid).sum() > 20
    full = _run(name, params, cols)
    dropped = run_kernel(name, _feed(name, cols, DATA, valid), inputs=cols,
                         keys=DATA["keys"][valid], ts=DATA["ts"][valid], params=params)
    for out, values in full.items():
        np.testing.assert_array_equal(values[valid], dropped[out])
        if values.dtype == np.int8:
            assert (values[~valid] == 0).all()
        else:
            assert np.isnan(values[~valid]).all()


# first-row value of each kernel (NaN unless stated)
FIRST = {"ewcov": 0.0, "kalman_1d": 1.0, "drawdown": 0.0}


@pytest.mark.parametrize(("name", "params", "cols"), KERNEL_CASES, ids=KIDS)
def test_single_row_and_key_seen_once(name, params, cols):
    one = {inp: np.array([1.0]) for inp in KERNELS.get(name).inputs}
    got = run_kernel(name, one, params=params)
    once = DATA["keys"] == "ONCE"
    seen = _run(name, params, cols)
    for out, values in got.items():
        assert seen[out][once].shape == (1,)
        for v in (values[0], seen[out][once][0]):
            if values.dtype == np.int8:
                assert v == 0
            elif name in FIRST:
                assert v == FIRST[name], out
            else:
                assert np.isnan(v), out


def test_constant_input():
    n = 200
    c = np.full(n, 60_123.25)
    r = np.full(n, 0.003)
    for name, out in (("rolling_min", "price_min10"), ("rolling_max", "price_max10")):
        v = run_kernel(name, {"price": c}, params={"window": 10})[out]
        assert np.isnan(v[:9]).all() and (v[9:] == 60_123.25).all()
    dc = run_kernel("donchian_channel", {"price": c}, params={"window": "30s"})
    assert (dc["dc_mid"][1:] == 60_123.25).all()
    for name, out in (("rolling_skew", "log_return_skew10"), ("rolling_kurt", "log_return_kurt10")):
        for x in (r, c):
            assert np.isnan(run_kernel(name, {"log_return": x}, params={"window": 10})[out]).all()
    cf = run_kernel("cornish_fisher_var", {"log_return": r}, params={"window": 10})["cf_var"]
    assert np.isnan(cf).all()
    rng = np.random.default_rng(0)
    noise = rng.normal(size=n)
    assert np.isnan(run_kernel("rolling_corr", {"x": noise, "y": r})["corr"]).all()
    assert np.isnan(run_kernel("rolling_corr", {"x": r, "y": noise})["corr"]).all()
    assert np.isnan(run_kernel("rolling_beta", {"x": noise, "y": r})["beta"]).all()
    beta = run_kernel("rolling_beta", {"x": r, "y": noise}, params={"window": 10})["beta"]
    np.testing.assert_allclose(beta[9:], 0.0, atol=1e-15)
    assert (run_kernel("ewcov", {"x": r, "y": noise})["ewcov"] == 0.0).all()
    mrv = run_kernel("medrv", {"log_return": r}, params={"window": 10})["medrv"]
    np.testing.assert_allclose(mrv[9:], MEDRV_C * 10 * 0.003**2, rtol=1e-13)
    st_ = run_kernel("stochastic_osc", {"high": c, "low": c, "close": c})
    assert np.isnan(st_["stoch_k"]).all() and np.isnan(st_["stoch_d"]).all()
    assert (run_kernel("kalman_1d", {"price": c})["kalman"] == 60_123.25).all()
    flag = run_kernel("outlier_flag_mad", {"price": c}, params={"window": 10})["outlier"]
    assert (flag == 0).all()
    dd = run_kernel("drawdown", {"equity": c})
    assert (dd["drawdown"] == 0).all() and (dd["max_drawdown"] == 0).all()


def test_known_values():
    got = run_kernel("rolling_skew", {"log_return": np.array([1.0, 2.0, 4.0])},
                     params={"window": 3})["log_return_skew3"]
    np.testing.assert_allclose(got, [np.nan, np.nan, 0.9352195295828247], rtol=1e-12)
    got = run_kernel("rolling_kurt", {"log_return": np.array([1.0, 2.0, 3.0, 10.0])},
                     params={"window": 4})["log_return_kurt4"]
    np.testing.assert_allclose(got, [np.nan] * 3 + [3.228], rtol=1e-12)
    got = run_kernel("ewcov", {"x": np.array([1.0, 3.0]), "y": np.array([1.0, 5.0])},
                     params={"alpha": 0.5})["ewcov"]
    np.testing.assert_allclose(got, [0.0, 2.0])
    got = run_kernel("medrv", {"log_return": np.array([1.0, -2.0, 3.0])},
                     params={"window": 3})["medrv"]
    np.testing.assert_allclose(got, [np.nan, np.nan, MEDRV_C * 3 * 4])
    got = run_kernel("stochastic_osc", {"high": np.array([10.0, 12.0]),
                                        "low": np.array([8.0, 9.0]),
                                        "close": np.array([9.0, 11.0])}, params={"k": 2, "d": 1})
    np.testing.assert_allclose(got["stoch_k"], [np.nan, 75.0])
    got = run_kernel("kalman_1d", {"price": np.array([1.0, 2.0])}, params={"q": 0, "r": 1})
    np.testing.assert_allclose(got["kalman"], [1.0, 1.5])
    got = run_kernel("outlier_flag_mad", {"price": np.array([1.0, 1, 1, 1, 50])},
                     params={"window": 5})["outlier"]
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 1])
    got = run_kernel("drawdown", {"equity": np.array([1.0, 3, 2, 0, 4])})
    np.testing.assert_array_equal(got["drawdown"], [0, 0, -1, -3, 0])
    np.testing.assert_array_equal(got["max_drawdown"], [0, 0, -1, -3, -3])
    # Cornish-Fisher with a symmetric window (S = 0) and the Gaussian quantile
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    cf = run_kernel("cornish_fisher_var", {"log_return": x}, params={"window": 5})["cf_var"]
    z = NormalDist().inv_cdf(0.05)
    k = pd.Series(x).kurt()
    np.testing.assert_allclose(cf[-1], -((z + (z**3 - 3 * z) * k / 24) * x.std(ddof=1)))


def test_kalman_gain_reaches_the_closed_form_steady_state():
    """With process noise q and measurement noise r the predicted variance converges to the
    root of P^2 - q P - q r = 0, P = (q + sqrt(q^2 + 4 q r)) / 2, and the gain to P / (P + r);
    the gain is read from the output as (x_t - x_{t-1}) / (z_t - x_{t-1})."""
    q, r = 0.1, 2.0
    z = np.where(np.arange(400) % 2 == 0, 100.0, 101.0)
    x = run_kernel("kalman_1d", {"price": z}, params={"q": q, "r": r})["kalman"]
    gain = (x[1:] - x[:-1]) / (z[1:] - x[:-1])
    p = (q + math.sqrt(q * q + 4 * q * r)) / 2
    assert gain[-1] == pytest.approx(p / (p + r), rel=1e-12)
    # and by hand, the first step from P_0 = 1: P = 1.1, K = 1.1 / 3.1, x = 100 + K
    assert x[1] == pytest.approx(100.0 + 1.1 / 3.1, rel=1e-15)


def test_outlier_even_window():
    # even window: numpy-linear median (mean of the two middle values) and MAD
    x = np.array([1.0, 2.0, 3.0, 10.0, 2.5, 2.4])
    got = run_kernel("outlier_flag_mad", {"price": x}, params={"window": 4, "k": 0.5})
    expected = ref_outlier(4, 0.5)({"price": x}, np.arange(6))
    np.testing.assert_array_equal(got["outlier"], expected.astype(np.int8))


def test_output_names():
    d = KERNELS.get("rolling_min")
    assert d.output_names(d.params(window="30s"), ["price"]) == ["price_min30s"]
    d = KERNELS.get("rolling_max")
    assert d.output_names(d.params(), ["mid"]) == ["mid_max20"]
    d = KERNELS.get("rolling_skew")
    assert d.output_names(d.params(), ["log_return"]) == ["log_return_skew100"]
    d = KERNELS.get("rolling_kurt")
    assert d.output_names(d.params(window=50), ["r"]) == ["r_kurt50"]
    d = KERNELS.get("donchian_channel")
    assert d.output_names(d.params(), ["price"]) == ["dc_high", "dc_low", "dc_mid"]
    assert KERNELS.get("outlier_flag_mad").output_dtypes == (np.int8,)
    for name, inputs in (("rolling_corr", ("x", "y")), ("stochastic_osc", ("high", "low", "close")),
                         ("drawdown", ("equity",)), ("cornish_fisher_var", ("log_return",))):
        assert KERNELS.get(name).inputs == inputs


@pytest.mark.parametrize(("name", "bad"), [
    ("rolling_min", {"window": 0}), ("rolling_max", {"window": "abc"}),
    ("rolling_max", {"min_periods": 0}), ("rolling_skew", {"window": 2}),
    ("rolling_kurt", {"window": 3}), ("rolling_skew", {"window": True}),
    ("rolling_corr", {"window": 1}), ("rolling_beta", {"window": "0s"}),
    ("ewcov", {"alpha": 0.0}), ("ewcov", {"alpha": 0.5, "span": 3}), ("ewcov", {"window": 3}),
    ("medrv", {"window": 2}), ("donchian_channel", {"window": -1}),
    ("stochastic_osc", {"k": 0}), ("stochastic_osc", {"d": 0}),
    ("stochastic_osc", {"k": True}), ("stochastic_osc", {"k": 2.5}),
    ("kalman_1d", {"q": -1.0}), ("kalman_1d", {"r": 0.0}),
    ("cornish_fisher_var", {"alpha": 0.0}), ("cornish_fisher_var", {"alpha": 1.0}),
    ("cornish_fisher_var", {"window": 3}), ("outlier_flag_mad", {"k": 0.0}),
    ("outlier_flag_mad", {"window": "1x"}), ("drawdown", {"window": 3}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


def test_params_accepted():
    assert KERNELS.get("rolling_skew").params(window="10s").window == "10s"
    assert KERNELS.get("rolling_kurt").params(window=4).window == 4
    assert KERNELS.get("stochastic_osc").params().k == 14
    assert KERNELS.get("stochastic_osc").params().d == 3
    assert KERNELS.get("ewcov").params(half_life=5).kernel_alpha() == pytest.approx(
        1 - 0.5 ** 0.2)


@pytest.mark.parametrize(("name", "params", "cols"), KERNEL_CASES, ids=KIDS)
@settings(max_examples=20, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, cols, splits):
    assert_split_invariant(name, _feed(name, cols, DATA), splits=splits, inputs=cols,
                           keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params", "cols"), KERNEL_CASES, ids=KIDS)
@pytest.mark.parametrize("at", [1, 40, N // 2, N - 1])
def test_state_roundtrip(name, params, cols, at):
    assert_state_roundtrip(name, _feed(name, cols, DATA), at=at, inputs=cols, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


def test_kernels_are_documented_numba_dispatchers():
    for name in ("rolling_min", "rolling_max", "rolling_skew", "rolling_kurt", "rolling_corr",
                 "rolling_beta", "ewcov", "medrv", "donchian_channel", "stochastic_osc",
                 "kalman_1d", "cornish_fisher_var", "outlier_flag_mad", "drawdown"):
        d = KERNELS.get(name)
        assert d.doc and d.formula
        assert hasattr(d.fn, "py_func")
