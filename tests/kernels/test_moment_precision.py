"""Moment kernels against exact rational arithmetic on inputs that defeat running power sums.

Running sums lose digits when a large value leaves a window of tiny ones (issue 17: a large
return, then a flat or near-flat stretch), and when prices near 1e5 move by cents. Each kernel
is held within 1e-9 relative of a reference computed with ``fractions.Fraction`` from the same
float inputs, so the only error allowed is the kernel's own.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared_path
from tickflow.engine.testing import run_kernel

RTOL = 1e-9
WINDOW = 20
SPAN_US = 5_000_000


def _returns_with_outliers(seed: int = 5, n: int = 400) -> np.ndarray:
    """Small returns; every 60 rows one large return followed by a flat (exact 0) or
    near-flat (1e-9 scale) stretch longer than the window, so the window ends up holding
    only tiny values just after the large one has left it."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 1e-4, n)
    for j, at in enumerate(range(10, n - 40, 60)):
        r[at] = 0.05 if j % 2 == 0 else -0.03
        stretch = r[at + 1: at + 1 + WINDOW + 10]
        stretch[:] = 0.0 if j % 3 == 0 else rng.normal(0.0, 1e-9, len(stretch))
    return r


def _prices_near_1e5(seed: int = 6, n: int = 400) -> np.ndarray:
    """Prices around 100,000 moving by a cent or less, with one 5% jump that then leaves
    the window."""
    rng = np.random.default_rng(seed)
    steps = np.round(rng.normal(0.0, 0.004, n), 3)
    steps[150] = 5_000.0
    return 100_000.0 + np.cumsum(steps)


def _coarse_ts(n: int, seed: int = 7) -> np.ndarray:
    """Stamps 1 s apart with some repeats, so a 5 s window holds 1 to 10 rows."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.integers(0, 2, n) * 1_000_000).astype(np.int64)


# --------------------------------------------------------------------------- exact references


def _central(w: list[Fraction]) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    n = len(w)
    mean = sum(w, Fraction(0)) / n
    devs = [v - mean for v in w]
    return (mean, sum((d * d for d in devs), Fraction(0)) / n,
            sum((d ** 3 for d in devs), Fraction(0)) / n,
            sum((d ** 4 for d in devs), Fraction(0)) / n)


def _sqrt(q: Fraction) -> float:
    """sqrt of a non-negative rational, correctly rounded enough for a 1e-9 check."""
    return math.sqrt(q.numerator) / math.sqrt(q.denominator)


def exact(stat: str, w: list[Fraction], last: Fraction) -> float:
    n = len(w)
    mean, m2, m3, m4 = _central(w)
    if stat == "mean":
        return float(mean)
    if stat == "maxabs":
        return float(max(abs(v) for v in w))
    if stat == "std":  # sample
        return _sqrt(m2 * n / (n - 1)) if n > 1 else math.nan
    if stat == "pstd":
        return _sqrt(m2)
    if stat == "zscore":
        return float(last - mean) / _sqrt(m2 * n / (n - 1)) if m2 else math.nan
    if stat == "sumsq":
        return float(sum((v * v for v in w), Fraction(0)))
    if m2 == 0:
        return math.nan
    if stat == "skew":
        if n < 3:
            return math.nan
        return math.sqrt(n * (n - 1)) / (n - 2) * float(m3) / float(m2) ** 1.5
    if stat == "kurt":
        if n < 4:
            return math.nan
        return float(((n * n - 1) * m4 / (m2 * m2) - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3)))
    raise AssertionError(stat)


def exact_rolling(stat: str, x: np.ndarray, ts: np.ndarray | None, window: int | None,
                  min_periods: int) -> np.ndarray:
    key = (stat, x.tobytes(), None if ts is None else ts.tobytes(), window, min_periods)
    if key not in _EXACT:
        _EXACT[key] = _exact_rolling(stat, x, ts, window, min_periods)
    return _EXACT[key]


_EXACT: dict[tuple, np.ndarray] = {}
"""Exact references already computed (several kernels share a statistic)."""


def _exact_rolling(stat: str, x: np.ndarray, ts: np.ndarray | None, window: int | None,
                   min_periods: int) -> np.ndarray:
    """The statistic of each row's window: the last ``window`` rows, or the rows with stamps
    in (t - SPAN_US, t]."""
    q = [Fraction(float(v)) for v in x]
    out = np.full(len(x), np.nan)
    for j in range(len(x)):
        if window is not None:
            if j + 1 < window:
                continue
            w = q[j - window + 1: j + 1]
        else:
            w = [q[i] for i in range(j + 1) if ts[i] > ts[j] - SPAN_US]
            if len(w) < min_periods:
                continue
        out[j] = exact(stat, w, q[j])
    return out


def assert_relative(got: np.ndarray, expected: np.ndarray, what: str,
                    floor: np.ndarray | float = 1e-300) -> None:
    """|got - exact| <= RTOL |exact|; ``floor`` stands in for |exact| where a statistic's
    exact value is 0 or near it (a skew of a symmetric window, a mean of zeros), where no
    relative bound can hold."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: NaNs")
    m = ~np.isnan(expected)
    floor = np.broadcast_to(floor, got.shape)[m]
    err = np.abs(got[m] - expected[m]) / np.maximum(np.abs(expected[m]), floor)
    worst = int(np.argmax(err)) if err.size else 0
    assert not err.size or err[worst] <= RTOL, (
        f"{what}: relative error {err[worst]:.3g} at row {np.flatnonzero(m)[worst]}: "
        f"got {got[m][worst]!r}, exact {expected[m][worst]!r}")


# (kernel, params, output, exact statistic, how its output follows from the statistic)
MOMENT_KERNELS = [
    ("rolling_kurt", "kurt", "x_kurt{w}", None),
    ("rolling_skew", "skew", "x_skew{w}", None),
    ("rolling_std", "std", "x_std{w}", None),
    ("rolling_zscore", "zscore", "zscore", None),
    ("bollinger_bands", "pstd", "bb_upper", "band"),
    ("bollinger_bands", "mean", "bb_mid", None),
    ("realized_var", "sumsq", "realized_var", None),
    ("cornish_fisher_var", "cf", "cf_var", None),
]


def _expected(stat: str, x: np.ndarray, ts: np.ndarray | None, window: int | None,
              min_periods: int, output: str) -> np.ndarray:
    if stat == "cf":
        mean, std, s, k = (exact_rolling(s_, x, ts, window, min_periods)
                           for s_ in ("mean", "std", "skew", "kurt"))
        z = NormalDist().inv_cdf(0.05)
        zcf = (z + (z * z - 1) * s / 6 + (z ** 3 - 3 * z) * k / 24
               - (2 * z ** 3 - 5 * z) * s * s / 36)
        return -(mean + zcf * std)
    if output == "bb_upper":
        return exact_rolling("mean", x, ts, window, min_periods) + 2.0 * exact_rolling(
            "pstd", x, ts, window, min_periods)
    return exact_rolling(stat, x, ts, window, min_periods)


FLOORS = {"skew": 1e-3, "zscore": 1e-3}
"""Skews and z-scores are O(0.1-10); near 0 they are checked to 1e-12 absolute, and a mean
to 1e-9 of the window's largest |x| (1e-18 for a window of zeros)."""

INPUTS = {"returns_outliers": _returns_with_outliers, "prices_1e5": _prices_near_1e5}


@pytest.mark.parametrize("series", list(INPUTS))
@pytest.mark.parametrize("window", [WINDOW, "5s"])
@pytest.mark.parametrize(("name", "stat", "output", "_how"), MOMENT_KERNELS,
                         ids=[f"{m[0]}-{m[2]}" for m in MOMENT_KERNELS])
def test_moment_kernel_exact(name, stat, output, _how, window, series):
    x = INPUTS[series]()
    ts = _coarse_ts(len(x))
    min_periods = 4
    params = {"window": window}
    if isinstance(window, str):
        params["min_periods"] = min_periods
    w = window if isinstance(window, int) else None
    got = run_kernel(name, {"x": x}, inputs=["x"], ts=ts, params=params)
    col = output.format(w=window)
    expected = _expected(stat, x, ts, w, min_periods, output)
    if name == "rolling_zscore":  # the kernel is NaN where the window is constant
        expected[np.isnan(got[col]) & (expected == 0)] = np.nan
    floor = FLOORS.get(stat, 1e-300)
    if stat == "mean":  # a mean's rounding is relative to the window's values
        floor = np.maximum(exact_rolling("maxabs", x, ts, w, min_periods), 1e-9)
    assert_relative(got[col], expected, f"{name} {params} on {series}", floor)


def test_flat_after_one_return_gives_exact_kurtosis():
    """19 zero returns and one non-zero one: the excess kurtosis of such a window is exactly
    n = 20, whatever came before it."""
    r = np.concatenate([np.full(30, 1e-4) * np.sign(np.sin(np.arange(30))), [0.04],
                        np.zeros(19)])
    got = run_kernel("rolling_kurt", {"log_return": r}, params={"window": 20})
    assert got["log_return_kurt20"][-1] == pytest.approx(20.0, rel=RTOL)


def test_issue_17_real_btc_usd_trades():
    """The reproduction of issue 17 on recorded Coinbase BTC-USD trades: a flat stretch
    inserted, NaNs filled from the previous price, log returns, rolling_kurt 20."""
    path = shared_path("data", "coinbase_advanced_trade", "market_trades_2026-08-09.csv")
    trades = pd.read_csv(path)
    trades = trades[trades["symbol"] == "BTC-USD"].sort_values("time", kind="stable")
    price = trades["price"].to_numpy(dtype=np.float64)
    price = pd.Series(np.insert(price, 50, [np.nan] * 19)).ffill().to_numpy()
    r = np.concatenate([[np.nan], np.log(price[1:] / price[:-1])])
    got = run_kernel("rolling_kurt", {"log_return": r}, params={"window": 20})
    expected = exact_rolling("kurt", r[1:], None, 20, 0)
    expected = np.concatenate([[np.nan], expected])
    # rows whose window is constant (all zero returns) have no kurtosis
    assert_relative(got["log_return_kurt20"], expected, "rolling_kurt on BTC-USD trades")
    pandas = pd.Series(r).rolling(20).kurt().to_numpy()
    row = int(np.nanargmax(np.abs(got["log_return_kurt20"] - pandas)))
    assert abs(got["log_return_kurt20"][row] - pandas[row]) <= 1e-9 * abs(pandas[row])
