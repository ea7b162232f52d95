"""liquidity kernels against pandas / plain loops written from KERNELS.md."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts, windows
from tests.kernels.data import per_key_all_valid as per_key
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 2000
RTOL = 1e-9


def make_data(n: int = N, seed: int = 21) -> dict[str, np.ndarray]:
    """Interleaved keys (one seen once), tick-rounded prices (so some changes are 0), sizes
    null on ~25% of rows (quotes), ~3% NaN elsewhere, irregular timestamps (about 19 rows of
    a key per 30 s; 10% repeated stamps)."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    price = np.round(100.0 + np.cumsum(rng.normal(0.0, 0.02, n)), 2)
    size = rng.exponential(1.0, n)
    size[rng.random(n) < 0.25] = np.nan
    data = {"price": price, "last_size": size,
            "log_return": rng.standard_t(4, n) * 0.001,
            "signed_volume": rng.normal(0.0, 2.0, n),
            "midprice": price + rng.normal(0.0, 0.01, n),
            "high": price + np.abs(rng.normal(0.0, 0.05, n)),
            "low": price - np.abs(rng.normal(0.0, 0.05, n)),
            "x": rng.normal(size=n), "y": rng.normal(size=n)}
    for name, col in data.items():
        if name != "last_size":
            col[rng.random(n) < 0.03] = np.nan
        col[n // 2] = 1.0
    data["y"][1:] += 0.8 * data["x"][:-1]  # y partly follows x
    data["ts"] = irregular_ts(rng, n)
    data["keys"] = keys
    return data


DATA = make_data()


def _roll(x, ts, window):
    if isinstance(window, str):
        return pd.Series(x, index=pd.to_datetime(ts, unit="us")).rolling(window, min_periods=2)
    return pd.Series(x).rolling(window)


def ref_vwap(window):
    def f(d, ts):
        p, s = d["price"], d["last_size"]
        if window is None:
            return np.cumsum(p * s) / np.cumsum(s)
        return (_roll(p * s, ts, window).sum() / _roll(s, ts, window).sum()).to_numpy()
    return f


def ref_signed_volume(d, ts):
    p, s = d["price"], d["last_size"]
    out = np.empty(len(p))
    sign = 0.0
    for j in range(len(p)):
        if j and p[j] != p[j - 1]:
            sign = 1.0 if p[j] > p[j - 1] else -1.0
        out[j] = sign * s[j]
    return out


def ref_vpin(bucket_volume, buckets):
    """Pours each trade piece by piece into buckets (no shortcut for whole buckets)."""
    def f(d, ts):
        signed = ref_signed_volume(d, ts)
        sizes = d["last_size"]
        out = np.full(len(sizes), np.nan)
        done: list[float] = []
        filled = net = 0.0
        for j, s in enumerate(sizes):
            sign = 0.0 if s == 0 else signed[j] / s
            while s > 0:
                room = bucket_volume - filled
                take = min(s, room)
                filled += take
                net += sign * take
                s -= take
                if take == room:
                    done.append(abs(net) / bucket_volume)
                    filled = net = 0.0
            if len(done) >= buckets:
                out[j] = np.mean(done[-buckets:])
        return out
    return f


def ref_kyle(window):
    def f(d, ts):
        r, v = d["log_return"], d["signed_volume"]
        idx = pd.to_datetime(ts, unit="us") if isinstance(window, str) else None
        sv = pd.Series(v, index=idx)
        return (_roll(r, ts, window).cov(sv) / _roll(v, ts, window).var()).to_numpy()
    return f


def ref_amihud(window):
    def f(d, ts):
        a = np.abs(d["log_return"]) / (d["price"] * d["last_size"])
        return _roll(a, ts, window).mean().to_numpy()
    return f


def ref_roll(window, min_periods=2):
    """Pairs (d_t, d_{t-1}) attached to p_t; sample covariance over the window's pairs."""
    def f(d, ts):
        p = d["price"]
        out = np.full(len(p), np.nan)
        dd = np.diff(p)
        pairs = np.array([(dd[j - 1], dd[j - 2]) for j in range(2, len(p))]).reshape(-1, 2)
        pts = ts[2:]
        for j, w in windows(np.arange(len(pairs)), pts, window, min_periods):
            c = np.cov(pairs[w, 0], pairs[w, 1], ddof=1)[0, 1]
            out[j + 2] = 2 * math.sqrt(-c) if c < 0 else 0.0
        return out
    return f


def ref_effective(d, ts):
    return 2 * np.abs(d["price"] - d["midprice"]) / d["midprice"] * 10_000


def ref_cs(d, ts):
    h, lo = d["high"], d["low"]
    out = np.full(len(h), np.nan)
    den = 3 - 2 * math.sqrt(2)
    for j in range(1, len(h)):
        beta = math.log(h[j] / lo[j]) ** 2 + math.log(h[j - 1] / lo[j - 1]) ** 2
        gamma = math.log(max(h[j], h[j - 1]) / min(lo[j], lo[j - 1])) ** 2
        alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / den - math.sqrt(gamma / den)
        s = 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))
        out[j] = max(s, 0.0)
    return out


def ref_xcorr(max_lag, window, which):
    def f(d, ts):
        x, y = d["x"], d["y"]
        out = np.full(len(x), np.nan)
        for t in range(window + max_lag - 1, len(x)):
            best, best_lag = np.nan, 0
            for lag in sorted(range(-max_lag, max_lag + 1), key=lambda v: (abs(v), -v)):
                if lag >= 0:
                    a, b = x[t - window + 1: t + 1], y[t - window + 1 - lag: t + 1 - lag]
                else:
                    a, b = x[t - window + 1 + lag: t + 1 + lag], y[t - window + 1: t + 1]
                if np.ptp(a) == 0 or np.ptp(b) == 0:
                    continue
                r = np.corrcoef(a, b)[0, 1]
                if np.isnan(best) or abs(r) > abs(best):
                    best, best_lag = r, lag
            out[t] = best_lag if which == "lag" else best
        return out
    return f


CASES = [
    ("vwap", {}, "vwap", ref_vwap(None), 0),
    ("vwap", {"window": 20}, "vwap", ref_vwap(20), 0),
    ("vwap", {"window": "30s"}, "vwap", ref_vwap("30s"), 0),
    ("signed_volume", {}, "signed_volume", ref_signed_volume, 0),
    ("vpin", {"bucket_volume": 5.0, "buckets": 10}, "vpin", ref_vpin(5.0, 10), 1e-12),
    ("vpin", {"bucket_volume": 0.7, "buckets": 50}, "vpin", ref_vpin(0.7, 50), 1e-12),
    ("kyle_lambda", {}, "kyle_lambda", ref_kyle(100), 1e-13),
    ("kyle_lambda", {"window": "30s"}, "kyle_lambda", ref_kyle("30s"), 1e-13),
    ("amihud_illiquidity", {"window": 10}, "amihud", ref_amihud(10), 1e-15),
    ("amihud_illiquidity", {"window": "30s"}, "amihud", ref_amihud("30s"), 1e-15),
    # 2 sqrt(-c) turns an error e in c ~ 0 into e / sqrt(|c|): atol 1e-9 on spreads ~ 0.03
    ("roll_spread", {}, "roll_spread", ref_roll(100), 1e-9),
    ("roll_spread", {"window": 8}, "roll_spread", ref_roll(8), 1e-9),
    ("roll_spread", {"window": "30s"}, "roll_spread", ref_roll("30s"), 1e-9),
    ("effective_spread", {}, "effective_spread", ref_effective, 0),
    ("corwin_schultz_spread", {}, "cs_spread", ref_cs, 1e-15),
    ("xcorr_leadlag", {}, "lead_lag", ref_xcorr(10, 100, "lag"), 0),
    ("xcorr_leadlag", {}, "lead_lag_corr", ref_xcorr(10, 100, "corr"), 1e-12),
    ("xcorr_leadlag", {"max_lag": 3, "window": 12}, "lead_lag", ref_xcorr(3, 12, "lag"), 0),
    ("xcorr_leadlag", {"max_lag": 0, "window": 5}, "lead_lag_corr",
     ref_xcorr(0, 5, "corr"), 1e-12),
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}" for c in CASES]


def _inputs(name):
    return list(KERNELS.get(name).inputs)


def _run(name, params, data=DATA, mask=None):
    cols = _inputs(name)
    m = slice(None) if mask is None else mask
    return run_kernel(name, {c: data[c][m] for c in cols}, keys=data["keys"][m],
                      ts=data["ts"][m], params=params)


@pytest.mark.parametrize(("name", "params", "out", "ref", "atol"), CASES, ids=IDS)
def test_matches_reference_multi_key(name, params, out, ref, atol):
    got = _run(name, params)[out]
    expected = per_key(DATA, _inputs(name), ref)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=atol)
    assert np.isfinite(got).sum() > N // 3


@pytest.mark.parametrize(("name", "params", "out", "ref", "atol"), CASES, ids=IDS)
def test_keys_interleaved_row_by_row(name, params, out, ref, atol):
    n = 600
    data = make_data(n, seed=6)
    data["keys"] = np.array(["A", "B", "C"] * (n // 3))
    data["ts"] = np.cumsum(np.random.default_rng(7).integers(0, 2_000_000, n))
    got = _run(name, params, data)[out]
    np.testing.assert_allclose(got, per_key(data, _inputs(name), ref), rtol=RTOL, atol=atol)


KERNEL_CASES = [
    ("vwap", {}), ("vwap", {"window": 7}), ("vwap", {"window": "30s"}),
    ("signed_volume", {}), ("vpin", {"bucket_volume": 2.0, "buckets": 5}),
    ("kyle_lambda", {"window": 10}), ("kyle_lambda", {"window": "30s"}),
    ("amihud_illiquidity", {"window": "30s"}), ("roll_spread", {"window": 10}),
    ("roll_spread", {"window": "30s"}), ("effective_spread", {}),
    ("corwin_schultz_spread", {}), ("xcorr_leadlag", {"max_lag": 4, "window": 20}),
]
KIDS = [f"{n}-{p}" for n, p in KERNEL_CASES]


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
def test_nan_input_leaves_state_unchanged(name, params):
    valid = np.ones(N, dtype=bool)
    for c in _inputs(name):
        valid &= ~np.isnan(DATA[c])
    assert (~valid).sum() > 20
    full = _run(name, params)
    dropped = _run(name, params, mask=valid)
    for out, values in full.items():
        np.testing.assert_array_equal(values[valid], dropped[out])
        assert np.isnan(values[~valid]).all()


FIRST = {"vwap-{}": 1.0, "signed_volume-{}": 0.0, "effective_spread-{}": 0.0}


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
def test_single_row_and_key_seen_once(name, params):
    one = {c: np.array([1.0]) for c in _inputs(name)}
    got = run_kernel(name, one, params=params)
    seen = _run(name, params)
    once = DATA["keys"] == "ONCE"
    for out, values in got.items():
        assert seen[out][once].shape == (1,)
        for v in (values[0], seen[out][once][0]):
            if f"{name}-{params}" in FIRST:
                assert v == FIRST[f"{name}-{params}"], out
            else:
                assert np.isnan(v), out


def test_constant_prices():
    n = 300
    p = np.full(n, 100.0)
    s = np.full(n, 2.0)
    assert (run_kernel("vwap", {"price": p, "last_size": s})["vwap"] == 100.0).all()
    assert (run_kernel("signed_volume", {"price": p, "last_size": s})["signed_volume"]
            == 0.0).all()
    vp = run_kernel("vpin", {"price": p, "last_size": s},
                    params={"bucket_volume": 3.0, "buckets": 4})["vpin"]
    assert np.isnan(vp[:5]).all() and (vp[5:] == 0.0).all()  # 6 rows fill 4 buckets of 3
    rs = run_kernel("roll_spread", {"price": p}, params={"window": 5})["roll_spread"]
    assert np.isnan(rs[:6]).all() and (rs[6:] == 0.0).all()
    cs = run_kernel("corwin_schultz_spread", {"high": p, "low": p})["cs_spread"]
    assert (cs[1:] == 0.0).all()
    r = np.full(n, 0.001)
    sv = np.full(n, 3.0)
    kl = run_kernel("kyle_lambda", {"log_return": r, "signed_volume": sv})["kyle_lambda"]
    assert np.isnan(kl).all()  # var(signed volume) = 0 -> NaN, never inf
    am = run_kernel("amihud_illiquidity", {"log_return": r, "price": p, "last_size": s},
                    params={"window": 5})["amihud"]
    np.testing.assert_allclose(am[4:], 0.001 / 200.0, rtol=1e-15)
    xc = run_kernel("xcorr_leadlag", {"x": r, "y": np.arange(n, dtype=float)},
                    params={"max_lag": 2, "window": 10})
    assert np.isnan(xc["lead_lag"]).all() and np.isnan(xc["lead_lag_corr"]).all()


def test_division_by_zero_is_nan():
    got = run_kernel("vwap", {"price": np.array([100.0, 101.0]),
                              "last_size": np.array([0.0, 0.0])})["vwap"]
    assert np.isnan(got).all()
    got = run_kernel("effective_spread", {"price": np.array([1.0]),
                                          "midprice": np.array([0.0])})["effective_spread"]
    assert np.isnan(got).all()
    got = run_kernel("amihud_illiquidity",
                     {"log_return": np.array([0.01, 0.01, 0.02]),
                      "price": np.array([100.0, 100.0, 100.0]),
                      "last_size": np.array([1.0, 0.0, 1.0])}, params={"window": 2})["amihud"]
    np.testing.assert_allclose(got, [np.nan, np.nan, 0.03 / 200])


def test_known_values():
    got = run_kernel("vwap", {"price": np.array([100.0, 103.0]),
                              "last_size": np.array([1.0, 2.0])})["vwap"]
    np.testing.assert_allclose(got, [100.0, 102.0])
    got = run_kernel("signed_volume", {"price": np.array([100.0, 101, 101, 100]),
                                       "last_size": np.array([1.0, 2, 3, 1])})
    np.testing.assert_array_equal(got["signed_volume"], [0.0, 2.0, 3.0, -1.0])
    got = run_kernel("vpin", {"price": np.array([100.0, 101.0]),
                              "last_size": np.array([1.0, 1.0])},
                     params={"bucket_volume": 2.0, "buckets": 1})["vpin"]
    np.testing.assert_allclose(got, [np.nan, 0.5])
    # one big trade fills many buckets at once: only the last `buckets` count
    got = run_kernel("vpin", {"price": np.array([100.0, 101.0, 100.0]),
                              "last_size": np.array([1.0, 1000.0, 3.0])},
                     params={"bucket_volume": 2.0, "buckets": 3})["vpin"]
    np.testing.assert_allclose(got, [np.nan, 1.0, (1.0 + 0.0 + 1.0) / 3])
    got = run_kernel("roll_spread", {"price": np.array([10.0, 11, 10, 11, 10])},
                     params={"window": 3})["roll_spread"]
    np.testing.assert_allclose(got, [np.nan] * 4 + [2 * math.sqrt(4 / 3)])
    got = run_kernel("effective_spread", {"price": np.array([100.5]),
                                          "midprice": np.array([100.0])})["effective_spread"]
    np.testing.assert_allclose(got, [100.0])
    got = run_kernel("corwin_schultz_spread", {"high": np.array([101.0, 101.0]),
                                               "low": np.array([99.0, 99.0])})["cs_spread"]
    a = math.log(101 / 99)
    np.testing.assert_allclose(got, [np.nan, 2 * (math.exp(a) - 1) / (1 + math.exp(a))])
    got = run_kernel("kyle_lambda", {"log_return": np.array([1.0, 2.0, 3.0]) * 1e-4,
                                     "signed_volume": np.array([1.0, 2.0, 3.0])},
                     params={"window": 2})["kyle_lambda"]
    np.testing.assert_allclose(got, [np.nan, 1e-4, 1e-4])


@pytest.mark.parametrize("lead", [-3, 0, 2])
def test_xcorr_finds_the_lead(lead):
    x = np.random.default_rng(1).normal(size=400)
    y = np.roll(x, -lead)  # y_t = x_{t+lead}: y leads x by `lead`
    got = run_kernel("xcorr_leadlag", {"x": x, "y": y}, params={"max_lag": 5, "window": 50})
    assert np.isnan(got["lead_lag"][:54]).all()
    assert (got["lead_lag"][60:390] == lead).all()
    np.testing.assert_allclose(got["lead_lag_corr"][60:390], 1.0, rtol=1e-12)


def test_xcorr_ties_go_to_smallest_abs_lag():
    # x alternates, so lags 0, +-2, +-4 all correlate perfectly: lag 0 wins
    x = np.tile([1.0, -1.0, 2.0, -2.0], 30)
    got = run_kernel("xcorr_leadlag", {"x": x, "y": x}, params={"max_lag": 4, "window": 8})
    assert (got["lead_lag"][11:] == 0.0).all()


def test_output_names():
    d = KERNELS.get("xcorr_leadlag")
    assert d.output_names(d.params(), ["x", "y"]) == ["lead_lag", "lead_lag_corr"]
    d = KERNELS.get("vwap")
    assert d.output_names(d.params(window="5m"), ["price", "last_size"]) == ["vwap"]
    assert d.params().window is None
    assert KERNELS.get("amihud_illiquidity").inputs == ("log_return", "price", "last_size")
    assert KERNELS.get("kyle_lambda").inputs == ("log_return", "signed_volume")
    assert KERNELS.get("corwin_schultz_spread").inputs == ("high", "low")


@pytest.mark.parametrize(("name", "bad"), [
    ("vwap", {"window": 0}), ("vwap", {"window": "x"}), ("vwap", {"min_periods": 0}),
    ("signed_volume", {"window": 3}), ("vpin", {}), ("vpin", {"bucket_volume": 0.0}),
    ("vpin", {"bucket_volume": 1.0, "buckets": 0}),
    ("vpin", {"bucket_volume": 1.0, "buckets": True}), ("kyle_lambda", {"window": 1}),
    ("amihud_illiquidity", {"window": "-1s"}), ("roll_spread", {"window": 1}),
    ("effective_spread", {"k": 1}), ("corwin_schultz_spread", {"window": 2}),
    ("xcorr_leadlag", {"max_lag": -1}), ("xcorr_leadlag", {"window": 1}),
    ("xcorr_leadlag", {"window": "30s"}), ("xcorr_leadlag", {"max_lag": True}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
@settings(max_examples=20, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, splits):
    cols = _inputs(name)
    assert_split_invariant(name, {c: DATA[c] for c in cols}, splits=splits, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
@pytest.mark.parametrize("at", [1, 40, N // 2, N - 1])
def test_state_roundtrip(name, params, at):
    cols = _inputs(name)
    assert_state_roundtrip(name, {c: DATA[c] for c in cols}, at=at, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


def test_kernels_are_documented_numba_dispatchers():
    for name in ("vwap", "signed_volume", "vpin", "kyle_lambda", "amihud_illiquidity",
                 "roll_spread", "effective_spread", "corwin_schultz_spread", "xcorr_leadlag"):
        d = KERNELS.get(name)
        assert d.doc and d.formula
        assert hasattr(d.fn, "py_func")
