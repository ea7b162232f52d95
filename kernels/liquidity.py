"""Liquidity: Kyle's lambda, Amihud illiquidity, Roll's spread, effective spread and the
Corwin-Schultz spread. The family's trade-flow kernels (VWAP, signed volume, VPIN) are in
``trade_flow.py``, its lead-lag cross-correlation in ``lead_lag.py``."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import (
    Field,
    NoParams,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from tickflow.kernels.rolling_sums import MEAN_OF_VALUES, rolling_sum_walk
from tickflow.kernels.statistics import min_row_window, pair_state, pair_walk


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


# --------------------------------------------------------------------------- Kyle, Amihud


class KyleLambdaParams(WindowParams):
    """kyle_lambda: a (T) window; row windows need >= 2 rows."""

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the price-impact "
                                               "regression")

    @model_validator(mode="after")
    def _enough_rows(self) -> KyleLambdaParams:
        min_row_window(self, 2)
        return self


@kernel("kyle_lambda", params=KyleLambdaParams, inputs=("log_return", "signed_volume"),
        outputs=("kyle_lambda",), state=pair_state, args=_window_args, time_window=True,
        formula="OLS slope of r on signed volume over the window")
@njit(nogil=True, cache=True)
def kyle_lambda(key, ts, r, sv, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
                x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
                min_periods):
    """Kyle's lambda (price impact): the OLS slope (with intercept) of the log return on the
    signed volume over the window, cov(r, v) / var(v).

    A row is used when both inputs are valid; otherwise it outputs NaN and changes nothing.
    Warm-up: NaN until the window holds ``window`` rows (rows) or ``min_periods`` (time).
    NaN when the signed volume is constant over the window.

    State: as ``rolling_beta``: a ring of (r, v) with timestamps and shifted sums.

    >>> # r = 1e-4 * v -> 1e-4 once warm
    """
    return pair_walk(key, ts, r, sv, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 1)


class AmihudParams(WindowParams):
    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the |return| / volume "
                                               "average")


def _amihud_state(p: AmihudParams) -> list[Field]:
    return ring_fields(initial_capacity(p.window)) + moment_fields()


@kernel("amihud_illiquidity", params=AmihudParams, inputs=("log_return", "price", "last_size"),
        outputs=("amihud",), state=_amihud_state, args=_window_args, time_window=True,
        formula="mean over the window of |r| / (price * size)")
@njit(nogil=True, cache=True)
def amihud_illiquidity(key, ts, r, price, size, vals, tss, head, count, shift, s1, s2, since,
                       last, run, out, rows, span, min_periods):
    """Amihud (2002) illiquidity: the mean over the window of |r| / (price * size).

    A row with any input NaN, or with price * size = 0 (its ratio would divide by zero),
    outputs NaN and changes nothing. Warm-up: NaN until the window holds ``window`` values
    (rows) or ``min_periods`` (time).

    State: a ring of the ratios with timestamps and shifted running sums.

    >>> # (r, p, size) = (0.01, 100, 1), (-0.02, 100, 2) with window 2 -> NaN, 1e-4
    """
    n = key.shape[0]
    ratio = np.empty(n)  # NaN marks a row that changes nothing
    for i in range(n):
        dv = price[i] * size[i]
        v = r[i]
        if np.isnan(v) or np.isnan(dv) or dv == 0.0:
            ratio[i] = np.nan
        else:
            ratio[i] = abs(v) / abs(dv)
    return rolling_sum_walk(key, ts, ratio, ratio, vals, tss, head, count, shift, s1, s2, since,
                            last, run, out, rows, span, min_periods, MEAN_OF_VALUES)


# --------------------------------------------------------------------------- Roll


class RollSpreadParams(WindowParams):
    """roll_spread: a (T) window of (d_t, d_{t-1}) pairs; row windows need >= 2 pairs."""

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the return autocovariance")

    @model_validator(mode="after")
    def _enough_rows(self) -> RollSpreadParams:
        min_row_window(self, 2)
        return self


def _roll_state(p: RollSpreadParams) -> list[Field]:
    return [Field("prev_p"), Field("prev_d"), *pair_state(p)]


@kernel("roll_spread", params=RollSpreadParams, inputs=("price",), outputs=("roll_spread",),
        state=_roll_state, args=_window_args, time_window=True,
        formula="c = cov(d_t, d_{t-1}) over the window, d_t = p_t - p_{t-1}; 2 sqrt(-c) if c < 0")
@njit(nogil=True, cache=True)
def roll_spread(key, ts, price, prev_p, prev_d, xs, ys, tss, head, count, x_shift, x_s1, x_s2,
                x_since, x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                rows, span, min_periods):
    """Roll (1984) effective spread: with d_t = p_t - p_{t-1} (consecutive valid prices of the
    key), c = sample cov(d_t, d_{t-1}) over the window; 2 sqrt(-c) if c < 0, else 0.

    A pair (d_t, d_{t-1}) exists from the key's third valid price on and belongs to the row
    (and timestamp) of p_t. Warm-up: NaN until the window holds ``window`` pairs (rows) or
    ``min_periods`` pairs (time). A NaN price outputs NaN and changes nothing.

    State: the last price and price change, and a ring of pairs with shifted sums as in
    ``rolling_corr``.

    >>> # p = 10, 11, 10, 11, 10 with window 3 -> NaN x4, then 2 sqrt(4 / 3) (c = -4 / 3)
    """
    # Pass 1 forms the pairs on copies of the last price / change (a ring-full retry must
    # start from the state before row ``done``); pass 2 is the shared pair window; the
    # copies are kept when every row was taken, else the state is replayed up to ``done``.
    n = key.shape[0]
    pp = prev_p.copy()
    pd = prev_d.copy()
    dx = np.empty(n)
    dy = np.empty(n)
    _roll_pairs(key, price, pp, pd, dx, dy, n)
    done = pair_walk(key, ts, dx, dy, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 2)
    if done == n:
        prev_p[:] = pp
        prev_d[:] = pd
    else:
        _roll_pairs(key, price, prev_p, prev_d, dx, dy, done)
    return done


@njit(nogil=True, cache=True)
def _roll_pairs(key, price, prev_p, prev_d, dx, dy, stop):
    """(d_t, d_{t-1}) of rows [0, stop) into dx, dy (NaN where a row has no pair), updating
    the last price and price change per key."""
    for i in range(stop):
        k = key[i]
        p = price[i]
        dx[i] = np.nan
        dy[i] = np.nan
        if np.isnan(p):
            continue
        if np.isnan(prev_p[k]):
            prev_p[k] = p
            continue
        d = p - prev_p[k]
        if not np.isnan(prev_d[k]):
            dx[i] = d
            dy[i] = prev_d[k]
        prev_d[k] = d
        prev_p[k] = p


# --------------------------------------------------------------------------- spreads


@kernel("effective_spread", params=NoParams, inputs=("price", "midprice"),
        outputs=("effective_spread",), formula="2 |price - mid| / mid * 10,000 (bps)")
@njit(nogil=True, cache=True)
def effective_spread(key, ts, price, mid, out):
    """Effective spread in basis points: 2 |price - mid| / mid * 10,000.

    Warm-up: none. NaN when either input is NaN or the midprice is 0. State: none.

    >>> # price 100.5, mid 100 -> 100.0
    """
    for i in range(key.shape[0]):
        m = mid[i]
        if m == 0.0 or np.isnan(m) or np.isnan(price[i]):
            out[i] = np.nan
        else:
            out[i] = 2.0 * abs(price[i] - m) / m * 10_000.0
    return key.shape[0]


CS_DEN = 3.0 - 2.0 * np.sqrt(2.0)
CS_BETA = (np.sqrt(2.0) - 1.0) / CS_DEN  # (sqrt(2 beta) - sqrt(beta)) / D = CS_BETA sqrt(beta)
CS_GAMMA = 1.0 / np.sqrt(CS_DEN)  # sqrt(gamma / D) = CS_GAMMA |g|, gamma = g^2


@kernel("corwin_schultz_spread", params=NoParams, inputs=("high", "low"),
        outputs=("cs_spread",),
        state=lambda p: [Field("prev_h"), Field("prev_l"), Field("prev_a")],
        formula="Corwin-Schultz (2012) high-low spread from two consecutive bars")
@njit(nogil=True, cache=True)
def corwin_schultz_spread(key, ts, high, low, prev_h, prev_l, prev_a, out):
    """Corwin & Schultz (2012) spread from two consecutive bars (valid rows) of the key.

    beta = ln(H_t / L_t)^2 + ln(H_{t-1} / L_{t-1})^2; gamma = ln(max(H_t, H_{t-1}) /
    min(L_t, L_{t-1}))^2; alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt(2))
    - sqrt(gamma / (3 - 2 sqrt(2))); S = 2 (e^alpha - 1) / (1 + e^alpha), negative S set to 0.

    Warm-up: NaN on the key's first valid bar. A bar with high or low NaN, or not positive,
    outputs NaN and changes nothing.

    State: the previous bar's high, low and ln(high / low) per key. (Speed: the constant
    factors are folded, sqrt(2 beta) - sqrt(beta) = (sqrt 2 - 1) sqrt(beta) and
    sqrt(gamma / D) = |ln(...)| / sqrt(D), so a bar costs two logs, one root and one exp.)

    >>> # bars (101, 99), (101, 99) -> NaN, 0.01999... (alpha = ln(101 / 99))
    """
    for i in range(key.shape[0]):
        k = key[i]
        h = high[i]
        lo = low[i]
        if np.isnan(h) or np.isnan(lo) or h <= 0.0 or lo <= 0.0:
            out[i] = np.nan
            continue
        ph = prev_h[k]
        pl = prev_l[k]
        a0 = prev_a[k]
        a1 = np.log(h / lo)
        prev_h[k] = h
        prev_l[k] = lo
        prev_a[k] = a1
        if np.isnan(ph):
            out[i] = np.nan
            continue
        beta = a1 * a1 + a0 * a0
        g = np.log(max(h, ph) / min(lo, pl))
        alpha = CS_BETA * np.sqrt(beta) - CS_GAMMA * abs(g)
        e = np.exp(alpha)
        s = 2.0 * (e - 1.0) / (1.0 + e)
        out[i] = s if s > 0.0 else 0.0
    return key.shape[0]
