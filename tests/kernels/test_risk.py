"""risk kernels against numpy / pandas / plain loops: cusum, historical_var, historical_cvar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts, per_key_valid, windows
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 3000
RTOL = 1e-9
ATOL = 1e-13


def make_data(n: int = N, seed: int = 2) -> dict[str, np.ndarray]:
    """Interleaved keys (one appearing once), fat-tailed returns with ~3% NaN and some exact
    ties, irregular timestamps (about 19 rows of a key per 30 s; 10% repeated stamps)."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    r = rng.standard_t(3, n) * 0.004
    r[rng.random(n) < 0.05] = 0.0  # ties in the sorted window
    r[rng.random(n) < 0.03] = np.nan
    r[n // 2] = -0.01
    return {"keys": keys, "log_return": r, "ts": irregular_ts(rng, n)}


DATA = make_data()


def ref_var(alpha, window):
    def f(x, ts):
        out = np.full(len(x), np.nan)
        for j, w in windows(x, ts, window):
            out[j] = -np.quantile(w, alpha)
        return out
    return f


def ref_var_pandas(alpha, window):
    def f(x, ts):
        s = pd.Series(x, index=pd.to_datetime(ts, unit="us"))
        return -s.rolling(window, min_periods=2).quantile(alpha).to_numpy()
    return f


def ref_cvar(alpha, window):
    def f(x, ts):
        out = np.full(len(x), np.nan)
        for j, w in windows(x, ts, window):
            q = np.quantile(w, alpha)
            out[j] = -w[w <= q].mean()
        return out
    return f


def ref_cusum(k, h, target):
    """Two-sided Page CUSUM, reset after an alarm, straight from KERNELS.md."""
    def stat_and_alarm(x):
        sp = sn = 0.0
        stat = np.empty(len(x))
        alarm = np.zeros(len(x))
        for j, v in enumerate(x):
            sp = max(0.0, sp + v - target - k)
            sn = max(0.0, sn - v + target - k)
            stat[j] = max(sp, sn)
            if stat[j] > h:
                alarm[j] = 1
                sp = sn = 0.0
        return stat, alarm
    return stat_and_alarm


CASES = [
    ("historical_var", {}, "var", ref_var(0.05, 100)),
    ("historical_var", {"alpha": 0.3, "window": 7}, "var", ref_var(0.3, 7)),
    ("historical_var", {"window": 1}, "var", ref_var(0.05, 1)),
    ("historical_var", {"window": "30s"}, "var", ref_var(0.05, "30s")),
    ("historical_var", {"alpha": 0.1, "window": "30s"}, "var", ref_var_pandas(0.1, "30s")),
    ("historical_cvar", {}, "cvar", ref_cvar(0.05, 100)),
    ("historical_cvar", {"alpha": 0.5, "window": 9}, "cvar", ref_cvar(0.5, 9)),
    ("historical_cvar", {"window": "30s"}, "cvar", ref_cvar(0.05, "30s")),
    ("historical_cvar", {"alpha": 0.25, "window": "30s", "min_periods": 5}, "cvar", None),
]
IDS = [f"{c[0]}-{c[1]}" for c in CASES]


@pytest.mark.parametrize(("name", "params", "out", "ref"), CASES, ids=IDS)
def test_var_matches_reference_multi_key(name, params, out, ref):
    if ref is None:
        def ref(x, ts):
            res = np.full(len(x), np.nan)
            for j, w in windows(x, ts, "30s", min_periods=5):
                q = np.quantile(w, 0.25)
                res[j] = -w[w <= q].mean()
            return res
    got = run_kernel(name, {"log_return": DATA["log_return"]}, keys=DATA["keys"],
                     ts=DATA["ts"], params=params)[out]
    expected = per_key_valid(DATA["keys"], DATA["log_return"], DATA["ts"], ref)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert np.isfinite(got).sum() > N // 2
    assert np.isnan(got[DATA["keys"] == "ONCE"]).all() or params.get("window") == 1


@pytest.mark.parametrize(("k", "h", "target"), [(0.0005, 0.01, 0.0), (0.0, 0.02, 0.001),
                                                (0.002, 0.005, -0.001)])
def test_cusum_matches_reference_multi_key(k, h, target):
    got = run_kernel("cusum", {"log_return": DATA["log_return"]}, keys=DATA["keys"],
                     params={"k": k, "h": h, "target": target})
    assert got["cusum_alarm"].dtype == np.int8
    assert got["cusum_stat"].dtype == np.float64
    ref = ref_cusum(k, h, target)
    stat = per_key_valid(DATA["keys"], DATA["log_return"], DATA["ts"], lambda x, ts: ref(x)[0])
    alarm = per_key_valid(DATA["keys"], DATA["log_return"], DATA["ts"], lambda x, ts: ref(x)[1])
    np.testing.assert_allclose(got["cusum_stat"], stat, rtol=RTOL, atol=ATOL)
    nan = np.isnan(DATA["log_return"])
    np.testing.assert_array_equal(got["cusum_alarm"][~nan], alarm[~nan])
    assert (got["cusum_alarm"][nan] == 0).all()
    assert got["cusum_alarm"].sum() > 10


def test_cusum_known_values_and_reset():
    x = np.array([0.006, 0.006, np.nan, 0.001, -0.004])
    got = run_kernel("cusum", {"log_return": x}, params={"k": 0.0, "h": 0.01})
    # the alarm at 0.012 resets both sums; then S+ = 0.001, and -0.004 moves S- to 0.004
    np.testing.assert_allclose(got["cusum_stat"], [0.006, 0.012, np.nan, 0.001, 0.004])
    np.testing.assert_array_equal(got["cusum_alarm"], [0, 1, 0, 0, 0])


def test_keys_interleaved_row_by_row():
    n = 900
    rng = np.random.default_rng(4)
    keys = np.array(["A", "B", "C"] * (n // 3))
    x = rng.normal(0, 0.01, n)
    ts = np.arange(n, dtype=np.int64)
    for name, params, out, ref in [("historical_var", {"window": 20}, "var", ref_var(0.05, 20)),
                                   ("historical_cvar", {"window": 20}, "cvar",
                                    ref_cvar(0.05, 20))]:
        got = run_kernel(name, {"log_return": x}, keys=keys, params=params)[out]
        np.testing.assert_allclose(got, per_key_valid(keys, x, ts, ref), rtol=RTOL, atol=ATOL)
    got = run_kernel("cusum", {"log_return": x}, keys=keys)["cusum_stat"]
    ref = ref_cusum(0.0005, 0.01, 0.0)
    expected = per_key_valid(keys, x, ts, lambda v, ts: ref(v)[0])
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def exact_tail(alpha, window, tail_mean, min_periods=2):
    """VaR / CVaR from the whole window sorted stably (by value, then arrival), with the
    kernel's arithmetic: the same values added in the same order give the same bits."""
    def f(x, ts):
        out = np.full(len(x), np.nan)
        for j, w in windows(x, ts, window, min_periods=min_periods):
            s = np.sort(w, kind="stable")
            c = len(s)
            qpos = alpha * (c - 1)
            lo = int(np.floor(qpos))
            hi = lo + 1 if lo + 1 < c else lo
            q = s[lo] + (s[hi] - s[lo]) * (qpos - lo)
            if not tail_mean:
                out[j] = -q
                continue
            total = 0.0
            m = 0
            while m < c and s[m] <= q:
                total += s[m]
                m += 1
            out[j] = -(total / m)
        return out
    return f


def tied_data(n: int = 4000, seed: int = 5) -> dict[str, np.ndarray]:
    """Returns on a coarse grid (many exact ties, both signs of zero), a falling stretch that
    fills the sorted tail and a rising one that empties it, NaNs, irregular timestamps."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    r = np.round(rng.standard_t(3, n) * 4) / 1000
    r[rng.random(n) < 0.05] = -0.0
    r[n // 4: n // 4 + 300] = -np.arange(300) * 1e-4
    r[n // 2: n // 2 + 300] = np.arange(300) * 1e-4
    r[rng.random(n) < 0.03] = np.nan
    return {"keys": keys, "log_return": r, "ts": irregular_ts(rng, n)}


@pytest.mark.parametrize("tail_mean", [False, True], ids=["var", "cvar"])
@pytest.mark.parametrize(("alpha", "window", "min_periods"), [
    (0.05, 100, 2), (0.01, 100, 2), (0.5, 20, 2), (0.9, 50, 2), (0.05, 3, 2), (0.05, 1, 2),
    (0.05, "30s", 2), (0.3, "30s", 5)])
@pytest.mark.parametrize("data", [DATA, tied_data()], ids=["returns", "ties"])
def test_bits_equal_a_stably_sorted_window(tail_mean, alpha, window, min_periods, data):
    """Keeping only the window's lowest values sorted reads the same numbers in the same order
    as sorting the whole window: the outputs are the same bits, split or not."""
    name, out = ("historical_cvar", "cvar") if tail_mean else ("historical_var", "var")
    params = {"alpha": alpha, "window": window, "min_periods": min_periods}
    expected = per_key_valid(data["keys"], data["log_return"], data["ts"],
                             exact_tail(alpha, window, tail_mean, min_periods))
    for splits in [(), (1, 777, 778, 2500)]:
        got = run_kernel(name, {"log_return": data["log_return"]}, keys=data["keys"],
                         ts=data["ts"], params=params, splits=splits)[out]
        np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))
    assert np.isfinite(got).sum() > len(got) // 3


def test_known_quantiles():
    x = np.array([3.0, 1.0, 5.0, 2.0, 4.0])
    var = run_kernel("historical_var", {"log_return": x},
                     params={"alpha": 0.25, "window": 5})["var"]
    cvar = run_kernel("historical_cvar", {"log_return": x},
                      params={"alpha": 0.25, "window": 5})["cvar"]
    np.testing.assert_array_equal(var, [np.nan] * 4 + [-2.0])
    np.testing.assert_array_equal(cvar, [np.nan] * 4 + [-1.5])


def test_constant_returns():
    r = np.full(200, -0.002)
    for name, out in [("historical_var", "var"), ("historical_cvar", "cvar")]:
        got = run_kernel(name, {"log_return": r}, params={"window": 10})[out]
        assert np.isnan(got[:9]).all()
        np.testing.assert_allclose(got[9:], 0.002, rtol=1e-14)
        got = run_kernel(name, {"log_return": r}, params={"window": "30s"})[out]
        assert np.isnan(got[0])
        np.testing.assert_allclose(got[1:], 0.002, rtol=1e-14)
    c = run_kernel("cusum", {"log_return": np.zeros(50)})
    assert (c["cusum_stat"] == 0.0).all() and (c["cusum_alarm"] == 0).all()


KERNEL_CASES = [("historical_var", {"window": 10}), ("historical_var", {"window": "30s"}),
                ("historical_cvar", {"alpha": 0.2, "window": 10}),
                ("historical_cvar", {"window": "30s"}), ("cusum", {})]
KIDS = [f"{n}-{p}" for n, p in KERNEL_CASES]


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
def test_nan_input_leaves_state_unchanged(name, params):
    x = DATA["log_return"]
    valid = ~np.isnan(x)
    full = run_kernel(name, {"log_return": x}, keys=DATA["keys"], ts=DATA["ts"], params=params)
    dropped = run_kernel(name, {"log_return": x[valid]}, keys=DATA["keys"][valid],
                         ts=DATA["ts"][valid], params=params)
    for out, values in full.items():
        np.testing.assert_array_equal(values[valid], dropped[out])
        if out == "cusum_alarm":
            assert (values[~valid] == 0).all()
        else:
            assert np.isnan(values[~valid]).all()


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
def test_single_row(name, params):
    got = run_kernel(name, {"log_return": np.array([0.02])}, params=params)
    if name == "cusum":
        assert got["cusum_stat"][0] == pytest.approx(0.0195)
        assert got["cusum_alarm"][0] == 1
    else:
        assert all(np.isnan(v[0]) for v in got.values())


@pytest.mark.parametrize(("name", "bad"), [
    ("historical_var", {"alpha": 0.0}), ("historical_var", {"alpha": 1.0}),
    ("historical_var", {"alpha": -0.5}), ("historical_var", {"window": 0}),
    ("historical_cvar", {"window": "1 fortnight"}), ("historical_cvar", {"min_periods": 0}),
    ("historical_cvar", {"alpha": 2}), ("cusum", {"h": 0.0}), ("cusum", {"k": -0.001}),
    ("cusum", {"window": 3}), ("cusum", {"h": "high"}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, splits):
    assert_split_invariant(name, {"log_return": DATA["log_return"]}, splits=splits,
                           keys=DATA["keys"], ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params"), KERNEL_CASES, ids=KIDS)
@pytest.mark.parametrize("at", [1, 40, N // 2, N - 1])
def test_state_roundtrip(name, params, at):
    assert_state_roundtrip(name, {"log_return": DATA["log_return"]}, at=at, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


def test_kernels_are_documented_numba_dispatchers():
    for name in ("cusum", "historical_var", "historical_cvar"):
        d = KERNELS.get(name)
        assert d.doc
        assert hasattr(d.fn, "py_func")
