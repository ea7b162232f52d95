"""Rolling statistics: min/max, skew, kurtosis, correlation, beta, EW covariance, MedRV,
Donchian channel, stochastic oscillator, 1-D Kalman filter, Cornish-Fisher VaR, MAD outlier
flag and drawdown."""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist
from typing import Annotated, Any

import numpy as np
from numba import njit
from pydantic import AfterValidator, BeforeValidator, model_validator
from pydantic import Field as PydanticField

from kernels.base import (
    AlphaParams,
    Field,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from kernels.window import (
    RECOMPUTE,
    is_warm,
    mom_add,
    mom_due,
    mom_recompute,
    mom_remove,
    mom_var,
    ring_advance,
    ring_at,
    ring_expired,
    ring_slot,
    sorted_insert,
    sorted_quantile,
    sorted_remove,
)

# --------------------------------------------------------------------------- param helpers


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, found {value!r}")
    return value


def _at_least(n: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < n:
            raise ValueError(f"must be an integer >= {n}, found {value!r}")
        return value
    return check


PosInt = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_at_least(1))]
"""An integer >= 1 (booleans rejected)."""


def min_row_window(p: WindowParams, n: int) -> None:
    """Row windows shorter than ``n`` can never produce a value: reject them."""
    if isinstance(p.window, int) and p.window < n:
        raise ValueError(f"window must be >= {n} rows for this statistic, found {p.window}")


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


# --------------------------------------------------------------------------- sorted windows


def _sorted_state(p: WindowParams) -> list[Field]:
    cap = initial_capacity(p.window)
    return [*ring_fields(cap), Field("sorted", (cap,), np.float64, np.nan, "linear")]


@njit(inline="always", nogil=True)
def sorted_push(k, t, v, vals, tss, head, count, sbuf, rows, span):
    """Evict what leaves the window (idempotent), then insert ``v`` into the ring and the
    sorted buffer. Returns False, having added nothing, when a time-window ring is full."""
    cap = vals.shape[1]
    while ring_expired(tss, head, count, k, t, rows, span):
        sorted_remove(sbuf, k, count[k], vals[k, head[k]])
        ring_advance(head, count, k, cap)
    if count[k] == cap:
        return False
    sorted_insert(sbuf, k, count[k], v)
    pos = ring_slot(head, count, k, cap)
    vals[k, pos] = v
    tss[k, pos] = t
    count[k] += 1
    return True


@njit(nogil=True, cache=True)
def sorted_extremes(key, ts, x, vals, tss, head, count, sbuf, out_max, out_min, rows, span,
                    min_periods):
    """Write the window's max and min once warm (NaN before and on NaN inputs)."""
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out_max[i] = np.nan
            out_min[i] = np.nan
            continue
        if not sorted_push(k, ts[i], v, vals, tss, head, count, sbuf, rows, span):
            return i
        if is_warm(count, k, rows, min_periods):
            out_max[i] = sbuf[k, count[k] - 1]
            out_min[i] = sbuf[k, 0]
        else:
            out_max[i] = np.nan
            out_min[i] = np.nan
    return key.shape[0]


class RollingMinMaxParams(WindowParams):
    window: Window = 20


@kernel("rolling_min", params=RollingMinMaxParams, inputs=("price",),
        outputs=("{input}_min{window}",), state=_sorted_state, args=_window_args,
        time_window=True, formula="min over the window")
@njit(nogil=True, cache=True)
def rolling_min(key, ts, x, vals, tss, head, count, sbuf, out, rows, span, min_periods):
    """Rolling minimum over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's values with timestamps and the same values kept sorted.

    >>> # x = 3, 1, 2 with window 2 -> NaN, 1.0, 1.0
    """
    scratch = np.empty(key.shape[0])
    return sorted_extremes(key, ts, x, vals, tss, head, count, sbuf, scratch, out, rows, span,
                           min_periods)


@kernel("rolling_max", params=RollingMinMaxParams, inputs=("price",),
        outputs=("{input}_max{window}",), state=_sorted_state, args=_window_args,
        time_window=True, formula="max over the window")
@njit(nogil=True, cache=True)
def rolling_max(key, ts, x, vals, tss, head, count, sbuf, out, rows, span, min_periods):
    """Rolling maximum over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's values with timestamps and the same values kept sorted.

    >>> # x = 3, 1, 2 with window 2 -> NaN, 3.0, 2.0
    """
    scratch = np.empty(key.shape[0])
    return sorted_extremes(key, ts, x, vals, tss, head, count, sbuf, out, scratch, rows, span,
                           min_periods)


class DonchianParams(WindowParams):
    window: Window = 20


@kernel("donchian_channel", params=DonchianParams, inputs=("price",),
        outputs=("dc_high", "dc_low", "dc_mid"), state=_sorted_state, args=_window_args,
        time_window=True, formula="rolling max, min and their mean")
@njit(nogil=True, cache=True)
def donchian_channel(key, ts, x, vals, tss, head, count, sbuf, out_high, out_low, out_mid,
                     rows, span, min_periods):
    """Donchian channel: dc_high = max, dc_low = min over the window, dc_mid = (high + low) / 2.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN in all three and leaves the window unchanged.

    State: a ring of the window's values with timestamps and the same values kept sorted.

    >>> # x = 1, 3 with window 2 -> NaN, then high 3, low 1, mid 2
    """
    done = sorted_extremes(key, ts, x, vals, tss, head, count, sbuf, out_high, out_low, rows,
                           span, min_periods)
    for i in range(done):
        out_mid[i] = (out_high[i] + out_low[i]) * 0.5
    return done


# --------------------------------------------------------------------------- higher moments


CANCEL_RATIO = 1e3
"""Power sums are recomputed when a removed 4th-power term exceeds this multiple of what
remains (more than 3 of the 16 digits cancelled)."""
FORCE_RECOMPUTE = 1 << 40


def _moment4_state(p: WindowParams) -> list[Field]:
    return (ring_fields(initial_capacity(p.window)) + moment_fields()
            + [Field("m_s3", (), np.float64, 0.0), Field("m_s4", (), np.float64, 0.0)])


@njit(nogil=True)
def _moment4_recompute(shift, s1, s2, s3, s4, since, k, vals, head, count):
    """Exact two-pass power sums of the window, re-centred on its mean."""
    n = count[k]
    cap = vals.shape[1]
    if n == 0:
        s1[k] = 0.0
        s2[k] = 0.0
        s3[k] = 0.0
        s4[k] = 0.0
        since[k] = 0
        return
    total = 0.0
    for j in range(n):
        total += vals[k, (head[k] + j) % cap]
    c = total / n
    a = 0.0
    b = 0.0
    e = 0.0
    f = 0.0
    for j in range(n):
        d = vals[k, (head[k] + j) % cap] - c
        d2 = d * d
        a += d
        b += d2
        e += d2 * d
        f += d2 * d2
    shift[k] = c
    s1[k] = a
    s2[k] = b
    s3[k] = e
    s4[k] = f
    since[k] = 0


@njit(nogil=True, cache=True)
def moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 out_mean, out_std, out_skew, out_kurt, rows, span, min_periods):
    """Keep each key's window with shifted power sums up to the 4th and write, once warm,
    the mean, sample std, pandas' adjusted skew (n >= 3) and bias-corrected excess kurtosis
    (n >= 4). Skew and kurtosis are NaN when the window is constant. Returns the row where a
    time-window ring is full, else n."""
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        t = ts[i]
        out_mean[i] = np.nan
        out_std[i] = np.nan
        out_skew[i] = np.nan
        out_kurt[i] = np.nan
        if np.isnan(v):
            continue
        while ring_expired(tss, head, count, k, t, rows, span):
            o = vals[k, head[k]]
            mom_remove(shift, s1, s2, k, o)
            d = o - shift[k]
            d4 = d * d * d * d
            s3[k] -= d * d * d
            s4[k] -= d4
            # an outlier leaving takes digits with it: recompute once the row is added
            if d4 > CANCEL_RATIO * abs(s4[k]):
                since[k] = FORCE_RECOMPUTE  # idempotent: survives a ring-full retry
            ring_advance(head, count, k, cap)
        if count[k] == cap:
            return i
        pos = ring_slot(head, count, k, cap)
        vals[k, pos] = v
        tss[k, pos] = t
        if count[k] == 0:
            s3[k] = 0.0
            s4[k] = 0.0
        mom_add(shift, s1, s2, since, last, run, k, v, count[k])
        d = v - shift[k]
        s3[k] += d * d * d
        s4[k] += d * d * d * d
        count[k] += 1
        if mom_due(since, count, k):
            _moment4_recompute(shift, s1, s2, s3, s4, since, k, vals, head, count)
        if not is_warm(count, k, rows, min_periods):
            continue
        n = count[k]
        fn = float(n)
        a = s1[k] / fn
        out_mean[i] = shift[k] + a
        if n < 2:
            continue
        if run[k] >= n:
            out_std[i] = 0.0
            continue
        b2 = s2[k] / fn
        m2 = b2 - a * a
        if m2 <= 0.0:
            out_std[i] = 0.0
            continue
        out_std[i] = np.sqrt(m2 * fn / (fn - 1.0))
        if n < 3:
            continue
        b3 = s3[k] / fn
        m3 = b3 - 3.0 * a * b2 + 2.0 * a * a * a
        out_skew[i] = np.sqrt(fn * (fn - 1.0)) * m3 / ((fn - 2.0) * m2 * np.sqrt(m2))
        if n < 4:
            continue
        m4 = s4[k] / fn - 4.0 * a * b3 + 6.0 * a * a * b2 - 3.0 * a * a * a * a
        out_kurt[i] = (((fn * fn - 1.0) * m4 / (m2 * m2) - 3.0 * (fn - 1.0) * (fn - 1.0))
                       / ((fn - 2.0) * (fn - 3.0)))
    return key.shape[0]


class RollingSkewParams(WindowParams):
    """rolling_skew: a (T) window; row windows need >= 3 values."""

    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingSkewParams:
        min_row_window(self, 3)
        return self


class RollingKurtParams(WindowParams):
    """rolling_kurt: a (T) window; row windows need >= 4 values."""

    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingKurtParams:
        min_row_window(self, 4)
        return self


@kernel("rolling_skew", params=RollingSkewParams, inputs=("log_return",),
        outputs=("{input}_skew{window}",), state=_moment4_state, args=_window_args,
        time_window=True, formula="adjusted Fisher-Pearson skewness, as pandas rolling().skew()")
@njit(nogil=True, cache=True)
def rolling_skew(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 out, rows, span, min_periods):
    """Rolling skewness as pandas ``rolling().skew()``: with population central moments
    m2, m3 of the n values, sqrt(n (n - 1)) / (n - 2) * m3 / m2^1.5.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time), and always while it holds fewer than 3. NaN when the window is constant.
    A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's values and shifted power sums (orders 1-4), recomputed
    two-pass every max(count, 32) pushes and whenever an outlier leaving the window cancels
    more than 3 digits of the 4th-power sum.

    >>> # x = 1, 2, 4 with window 3 -> NaN, NaN, 0.9352...
    """
    n = key.shape[0]
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    return moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                        s3, s4, a, b, out, c, rows, span, min_periods)


@kernel("rolling_kurt", params=RollingKurtParams, inputs=("log_return",),
        outputs=("{input}_kurt{window}",), state=_moment4_state, args=_window_args,
        time_window=True, formula="bias-corrected excess kurtosis, as pandas rolling().kurt()")
@njit(nogil=True, cache=True)
def rolling_kurt(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 out, rows, span, min_periods):
    """Rolling excess kurtosis as pandas ``rolling().kurt()``: with population central moments
    m2, m4 of the n values, ((n^2 - 1) m4 / m2^2 - 3 (n - 1)^2) / ((n - 2) (n - 3)).

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time), and always while it holds fewer than 4. NaN when the window is constant.
    A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's values and shifted power sums (orders 1-4).

    >>> # x = 1, 2, 3, 10 with window 4 -> NaN x3, 3.228
    """
    n = key.shape[0]
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    return moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                        s3, s4, a, b, c, out, rows, span, min_periods)


class CornishFisherParams(WindowParams):
    """cornish_fisher_var: tail probability 0 < alpha < 1; row windows need >= 4 values."""

    alpha: float = PydanticField(0.05, gt=0.0, lt=1.0)
    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> CornishFisherParams:
        min_row_window(self, 4)
        return self


def _cf_args(p: CornishFisherParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return NormalDist().inv_cdf(p.alpha), rows, span, p.min_periods


@kernel("cornish_fisher_var", params=CornishFisherParams, inputs=("log_return",),
        outputs=("cf_var",), state=_moment4_state, args=_cf_args, time_window=True,
        formula="-(mean + z_cf std), z_cf the Cornish-Fisher quantile from rolling skew/kurt")
@njit(nogil=True, cache=True)
def cornish_fisher_var(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                       s3, s4, out, z, rows, span, min_periods):
    """Cornish-Fisher (modified) value at risk over a row or time window.

    z = Phi^-1(alpha) (computed once in Python); S, K = the window's skew and excess kurtosis
    exactly as ``rolling_skew`` / ``rolling_kurt``; z_cf = z + (z^2 - 1) S / 6
    + (z^3 - 3z) K / 24 - (2 z^3 - 5 z) S^2 / 36; cf_var = -(mean + z_cf * std), std sample.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time), and while it holds fewer than 4. NaN when the window is constant (S undefined).
    A NaN input outputs NaN and leaves the window unchanged.

    State: as ``rolling_kurt``.

    >>> # S = K = 0 gives the Gaussian VaR -(mean + z std)
    """
    n = key.shape[0]
    mean = np.empty(n)
    std = np.empty(n)
    skew = np.empty(n)
    kurt = np.empty(n)
    done = moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                        s3, s4, mean, std, skew, kurt, rows, span, min_periods)
    z2 = z * z
    z3 = z2 * z
    for i in range(done):
        s = skew[i]
        kk = kurt[i]
        zcf = (z + (z2 - 1.0) * s / 6.0 + (z3 - 3.0 * z) * kk / 24.0
               - (2.0 * z3 - 5.0 * z) * s * s / 36.0)
        out[i] = -(mean[i] + zcf * std[i])  # NaN whenever S or K is
    return done


# --------------------------------------------------------------------------- pair windows


def pair_state(p: WindowParams) -> list[Field]:
    """A ring of (x, y) pairs with timestamps, shifted sums of x and of y, and their cross sum."""
    return (ring_fields(initial_capacity(p.window), values=("xs", "ys"))
            + moment_fields("x") + moment_fields("y") + [Field("sxy", (), np.float64, 0.0)])


@njit(nogil=True)
def _pair_recompute(xs, ys, head, count, k, x_shift, x_s1, x_s2, x_since, y_shift, y_s1, y_s2,
                    y_since, sxy):
    mom_recompute(x_shift, x_s1, x_s2, x_since, k, xs, head, count)
    mom_recompute(y_shift, y_s1, y_s2, y_since, k, ys, head, count)
    cap = xs.shape[1]
    c = 0.0
    for j in range(count[k]):
        p = ring_at(head, k, cap, j)
        c += (xs[k, p] - x_shift[k]) * (ys[k, p] - y_shift[k])
    sxy[k] = c


@njit(inline="always", nogil=True)
def pair_push(k, t, a, b, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last, x_run,
              y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, rows, span):
    """Evict expired pairs (idempotent), add (a, b). False, having added nothing, when a
    time-window ring is full."""
    cap = xs.shape[1]
    while ring_expired(tss, head, count, k, t, rows, span):
        o = head[k]
        mom_remove(x_shift, x_s1, x_s2, k, xs[k, o])
        mom_remove(y_shift, y_s1, y_s2, k, ys[k, o])
        sxy[k] -= (xs[k, o] - x_shift[k]) * (ys[k, o] - y_shift[k])
        ring_advance(head, count, k, cap)
    if count[k] == cap:
        return False
    pos = ring_slot(head, count, k, cap)
    xs[k, pos] = a
    ys[k, pos] = b
    tss[k, pos] = t
    c = count[k]
    mom_add(x_shift, x_s1, x_s2, x_since, x_last, x_run, k, a, c)
    mom_add(y_shift, y_s1, y_s2, y_since, y_last, y_run, k, b, c)
    if c == 0:
        sxy[k] = 0.0
    sxy[k] += (a - x_shift[k]) * (b - y_shift[k])
    count[k] += 1
    if mom_due(x_since, count, k):
        _pair_recompute(xs, ys, head, count, k, x_shift, x_s1, x_s2, x_since, y_shift, y_s1,
                        y_s2, y_since, sxy)
    return True


@njit(inline="always", nogil=True)
def pair_cov(x_s1, y_s1, sxy, k, n):
    """Sample covariance (ddof 1) of the window's pairs."""
    if n < 2:
        return np.nan
    return (sxy[k] - x_s1[k] * y_s1[k] / n) / (n - 1)


@njit(nogil=True, cache=True)
def pair_walk(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
              x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
              min_periods, what):
    """Rolling pair statistic: what 0 = Pearson correlation, 1 = cov / var(y) (OLS slope of x
    on y). NaN when a needed variance is 0. Returns the row where a ring is full, else n."""
    for i in range(key.shape[0]):
        k = key[i]
        a = x[i]
        b = y[i]
        if np.isnan(a) or np.isnan(b):
            out[i] = np.nan
            continue
        if not pair_push(k, ts[i], a, b, xs, ys, tss, head, count, x_shift, x_s1, x_s2,
                         x_since, x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run,
                         sxy, rows, span):
            return i
        n = count[k]
        if not is_warm(count, k, rows, min_periods) or n < 2:
            out[i] = np.nan
            continue
        vy = mom_var(y_s1, y_s2, y_run, k, n, 1)
        cov = pair_cov(x_s1, y_s1, sxy, k, n)
        if what == 1:
            out[i] = cov / vy if vy > 0.0 else np.nan
            continue
        vx = mom_var(x_s1, x_s2, x_run, k, n, 1)
        if not (vx > 0.0 and vy > 0.0):
            out[i] = np.nan
            continue
        rho = cov / np.sqrt(vx * vy)
        if rho > 1.0:
            rho = 1.0
        elif rho < -1.0:
            rho = -1.0
        out[i] = rho
    return key.shape[0]


class RollingCorrParams(WindowParams):
    """rolling_corr / rolling_beta: a (T) window; row windows need >= 2 pairs."""

    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingCorrParams:
        min_row_window(self, 2)
        return self


@kernel("rolling_corr", params=RollingCorrParams, inputs=("x", "y"), outputs=("corr",),
        state=pair_state, args=_window_args, time_window=True,
        formula="Pearson correlation of (x, y) over the window")
@njit(nogil=True, cache=True)
def rolling_corr(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
                 x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
                 min_periods):
    """Rolling Pearson correlation of x and y over a row or time window of pairs.

    A row is a pair when both x and y are valid; otherwise it outputs NaN and changes nothing.
    Warm-up: NaN until the window holds ``window`` pairs (rows) or ``min_periods`` (time).
    NaN when either side is constant over the window.

    State: a ring of pairs with timestamps, shifted sums of x and y, and their cross sum.

    >>> # x = 1, 2, 3; y = 2, 4, 7 with window 3 -> NaN, NaN, 0.9933...
    """
    return pair_walk(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 0)


@kernel("rolling_beta", params=RollingCorrParams, inputs=("x", "y"), outputs=("beta",),
        state=pair_state, args=_window_args, time_window=True,
        formula="cov(x, y) / var(y) over the window")
@njit(nogil=True, cache=True)
def rolling_beta(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
                 x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
                 min_periods):
    """Rolling beta of x on y: cov(x, y) / var(y) over a row or time window of pairs.

    A row is a pair when both x and y are valid; otherwise it outputs NaN and changes nothing.
    Warm-up: NaN until the window holds ``window`` pairs (rows) or ``min_periods`` (time).
    NaN when y is constant over the window.

    State: a ring of pairs with timestamps, shifted sums of x and y, and their cross sum.

    >>> # x = 2 y + 1 -> 2.0 once warm
    """
    return pair_walk(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 1)


# --------------------------------------------------------------------------- EW covariance


class EwcovParams(AlphaParams):
    """ewcov: alpha 0.06 unless a span or half_life is given."""

    def kernel_alpha(self) -> float:
        return self.resolved_alpha(default_alpha=0.06)


@kernel("ewcov", params=EwcovParams, inputs=("x", "y"), outputs=("ewcov",),
        state=lambda p: [Field("mx"), Field("my"), Field("c", (), np.float64, 0.0)],
        args=lambda p: (p.kernel_alpha(),),
        formula="c_t = (1 - alpha) (c_{t-1} + alpha dx dy), dx = x_t - m_x(t-1); c_0 = 0")
@njit(nogil=True, cache=True)
def ewcov(key, ts, x, y, mx, my, c, out, alpha):
    """Exponentially weighted covariance of x and y.

    m_x, m_y are EMA-family means (seeded with the first pair); with dx = x_t - m_x(t-1) and
    dy = y_t - m_y(t-1): c_t = (1 - alpha) (c_{t-1} + alpha dx dy), c_0 = 0. Output from the
    key's first valid pair. A row with x or y NaN outputs NaN and changes nothing.

    State: ``mx``, ``my`` (NaN until seeded) and ``c`` per key.

    >>> # (x, y) = (1, 1), (3, 5) with alpha 0.5 -> 0.0, 0.5 * (0 + 0.5 * 2 * 4) = 2.0
    """
    for i in range(key.shape[0]):
        k = key[i]
        a = x[i]
        b = y[i]
        if np.isnan(a) or np.isnan(b):
            out[i] = np.nan
            continue
        if np.isnan(mx[k]):
            mx[k] = a
            my[k] = b
            c[k] = 0.0
            out[i] = 0.0
            continue
        dx = a - mx[k]
        dy = b - my[k]
        c[k] = (1.0 - alpha) * (c[k] + alpha * dx * dy)
        mx[k] = alpha * a + (1.0 - alpha) * mx[k]
        my[k] = alpha * b + (1.0 - alpha) * my[k]
        out[i] = c[k]
    return key.shape[0]


# --------------------------------------------------------------------------- MedRV

MEDRV_C = np.pi / (6.0 - 4.0 * np.sqrt(3.0) + np.pi)


class MedrvParams(WindowParams):
    """medrv: a (T) window; row windows need >= 3 returns (one median triple)."""

    window: Window = 20

    @model_validator(mode="after")
    def _enough_rows(self) -> MedrvParams:
        min_row_window(self, 3)
        return self


def _medrv_state(p: MedrvParams) -> list[Field]:
    return [*ring_fields(initial_capacity(p.window), values=("absr", "med2")),
            Field("msum", (), np.float64, 0.0), Field("msince", (), np.int64, 0)]


@kernel("medrv", params=MedrvParams, inputs=("log_return",), outputs=("medrv",),
        state=_medrv_state, args=_window_args, time_window=True,
        formula="(pi / (6 - 4 sqrt 3 + pi)) (n / (n - 2)) sum median(|r_{i-1}|, |r_i|, "
                "|r_{i+1}|)^2 over the window")
@njit(nogil=True, cache=True)
def medrv(key, ts, r, absr, med2, tss, head, count, msum, msince, out, rows, span,
          min_periods):
    """Median realized variance (Andersen, Dobrev & Schaumburg 2012) over a window.

    With the window's n returns r_1..r_n (oldest first): (pi / (6 - 4 sqrt(3) + pi))
    * (n / (n - 2)) * sum_{i=2}^{n-1} median(|r_{i-1}|, |r_i|, |r_{i+1}|)^2, i.e. the n - 2
    triples lying wholly in the window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time), and while it holds fewer than 3. A NaN return outputs NaN and changes nothing.

    State: a ring of |r| and of each return's squared triple median (the triple it closes),
    with timestamps; the running sum of the medians of the triples in the window.

    >>> # r = 1, -2, 3 with window 3 -> NaN, NaN, MEDRV_C * 3 * 4
    """
    cap = absr.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        t = ts[i]
        while ring_expired(tss, head, count, k, t, rows, span):
            if count[k] >= 3:  # the triple closed by the 3rd oldest loses its first element
                msum[k] -= med2[k, ring_at(head, k, cap, 2)]
            ring_advance(head, count, k, cap)
        if count[k] < 3:
            msum[k] = 0.0
        if count[k] == cap:
            return i
        a = abs(v)
        m2 = 0.0
        c = count[k]
        if c >= 2:
            p1 = absr[k, ring_at(head, k, cap, c - 1)]
            p2 = absr[k, ring_at(head, k, cap, c - 2)]
            med = max(min(a, p1), min(max(a, p1), p2))
            m2 = med * med
            msum[k] += m2
        pos = ring_slot(head, count, k, cap)
        absr[k, pos] = a
        med2[k, pos] = m2
        tss[k, pos] = t
        count[k] += 1
        msince[k] += 1
        if msince[k] >= RECOMPUTE:
            total = 0.0
            for j in range(2, count[k]):
                total += med2[k, ring_at(head, k, cap, j)]
            msum[k] = total
            msince[k] = 0
        n = count[k]
        if n < 3 or not is_warm(count, k, rows, min_periods):
            out[i] = np.nan
            continue
        s = msum[k]
        out[i] = MEDRV_C * (n / (n - 2.0)) * (s if s > 0.0 else 0.0)
    return key.shape[0]


# --------------------------------------------------------------------------- stochastic


class StochasticParams(Params):
    """stochastic_osc: %K lookback k (14) rows and %D smoothing d (3) rows."""

    k: PosInt = 14
    d: PosInt = 3


def _stoch_state(p: StochasticParams) -> list[Field]:
    return [*ring_fields(p.k, values=("lows", "highs"), with_ts=False),
            Field("slow", (p.k,)), Field("shigh", (p.k,)),
            *ring_fields(p.d, values=("kvals",), group="d", with_ts=False)]


@kernel("stochastic_osc", params=StochasticParams, inputs=("high", "low", "close"),
        outputs=("stoch_k", "stoch_d"), state=_stoch_state, args=lambda p: (p.k, p.d),
        formula="%K = 100 (close - min low) / (max high - min low) over k rows; %D = SMA_d(%K)")
@njit(nogil=True, cache=True)
def stochastic_osc(key, ts, high, low, close, lows, highs, head, count, slow, shigh, kvals,
                   d_head, d_count, out_k, out_d, k_rows, d_rows):
    """Fast stochastic oscillator (Lane): %K = 100 (close - min low) / (max high - min low)
    over the last k rows, %D = the simple mean of the last d values of %K.

    Warm-up: %K from the key's k-th valid row, %D from its (k + d - 1)-th. %K is NaN when
    max high = min low (zero range), and a %D window holding such a NaN is NaN. A row with any
    input NaN outputs NaN in both and changes nothing. (TA-Lib's STOCHF gives 0 on a zero
    range.)

    State: a ring of the last k lows and highs with sorted copies; a ring of the last d %K.

    >>> # k 2, d 1: (h, l, c) = (10, 8, 9), (12, 9, 11) -> NaN, 100 * (11 - 8) / (12 - 8) = 75
    """
    cap = lows.shape[1]
    dcap = kvals.shape[1]
    for i in range(key.shape[0]):
        kk = key[i]
        h = high[i]
        lo = low[i]
        c = close[i]
        if np.isnan(h) or np.isnan(lo) or np.isnan(c):
            out_k[i] = np.nan
            out_d[i] = np.nan
            continue
        if count[kk] >= k_rows:
            o = head[kk]
            sorted_remove(slow, kk, count[kk], lows[kk, o])
            sorted_remove(shigh, kk, count[kk], highs[kk, o])
            ring_advance(head, count, kk, cap)
        sorted_insert(slow, kk, count[kk], lo)
        sorted_insert(shigh, kk, count[kk], h)
        pos = ring_slot(head, count, kk, cap)
        lows[kk, pos] = lo
        highs[kk, pos] = h
        count[kk] += 1
        if count[kk] < k_rows:
            out_k[i] = np.nan
            out_d[i] = np.nan
            continue
        mn = slow[kk, 0]
        mx = shigh[kk, count[kk] - 1]
        rng = mx - mn
        kv = 100.0 * (c - mn) / rng if rng != 0.0 else np.nan
        out_k[i] = kv
        if d_count[kk] >= d_rows:
            ring_advance(d_head, d_count, kk, dcap)
        kvals[kk, ring_slot(d_head, d_count, kk, dcap)] = kv
        d_count[kk] += 1
        if d_count[kk] < d_rows:
            out_d[i] = np.nan
            continue
        total = 0.0
        for j in range(d_rows):
            total += kvals[kk, ring_at(d_head, kk, dcap, j)]
        out_d[i] = total / d_rows
    return key.shape[0]


# --------------------------------------------------------------------------- Kalman


class Kalman1dParams(Params):
    """kalman_1d: process noise q >= 0 and measurement noise r > 0."""

    q: float = PydanticField(1e-5, ge=0.0)
    r: float = PydanticField(1e-2, gt=0.0)


@kernel("kalman_1d", params=Kalman1dParams, inputs=("price",), outputs=("kalman",),
        state=lambda p: [Field("xhat"), Field("pvar")], args=lambda p: (p.q, p.r),
        formula="x_0 = z_0, P_0 = 1; P += q; K = P / (P + r); x += K (z - x); P = (1 - K) P")
@njit(nogil=True, cache=True)
def kalman_1d(key, ts, z, xhat, pvar, out, q, r):
    """Random-walk (local level) Kalman filter of the price.

    x_0 = z_0, P_0 = 1 on the key's first valid value (output z_0); then per value:
    P = P + q; K = P / (P + r); x = x + K (z - x); P = (1 - K) P; output x.
    A NaN input outputs NaN and leaves x and P unchanged.

    State: ``xhat`` (NaN until seeded) and ``pvar`` per key.

    >>> # z = 1, 2 with q 0, r 1 -> 1.0, 1.5
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = z[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if np.isnan(xhat[k]):
            xhat[k] = v
            pvar[k] = 1.0
            out[i] = v
            continue
        p = pvar[k] + q
        gain = p / (p + r)
        xhat[k] = xhat[k] + gain * (v - xhat[k])
        pvar[k] = (1.0 - gain) * p
        out[i] = xhat[k]
    return key.shape[0]


# --------------------------------------------------------------------------- MAD outlier


class OutlierMadParams(WindowParams):
    """outlier_flag_mad: a (T) window and the threshold k > 0 (in robust standard deviations)."""

    window: Window = 100
    k: float = PydanticField(5.0, gt=0.0)


def _outlier_args(p: OutlierMadParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return p.k * 1.4826, rows, span, p.min_periods


@njit(inline="always", nogil=True)
def sorted_mad(sbuf, k, n, med):
    """Median of |x - med| over the sorted prefix sbuf[k, :n]: the deviations are merged in
    increasing order from the median outwards, stopping at rank n // 2."""
    lo_rank = (n - 1) // 2
    hi_rank = n // 2
    # split: left = indices < j (values <= med walked downwards), right = indices >= j
    j = 0
    while j < n and sbuf[k, j] < med:
        j += 1
    left = j - 1
    right = j
    a = 0.0
    b = 0.0
    for rank in range(hi_rank + 1):
        if left >= 0 and (right >= n or med - sbuf[k, left] <= sbuf[k, right] - med):
            dev = med - sbuf[k, left]
            left -= 1
        else:
            dev = sbuf[k, right] - med
            right += 1
        if rank == lo_rank:
            a = dev
        if rank == hi_rank:
            b = dev
    return 0.5 * (a + b)


@kernel("outlier_flag_mad", params=OutlierMadParams, inputs=("price",), outputs=("outlier",),
        output_dtypes=(np.int8,), state=_sorted_state, args=_outlier_args, time_window=True,
        formula="1 when |x - median| > k * 1.4826 * MAD over the window")
@njit(nogil=True, cache=True)
def outlier_flag_mad(key, ts, x, vals, tss, head, count, sbuf, out, kscale, rows, span,
                     min_periods):
    """Robust outlier flag: 1 when |x_t - median| > k * 1.4826 * MAD, the median and the
    median absolute deviation taken over the window including x_t (numpy-linear medians).

    Warm-up: 0 until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs 0 (int8 has no NaN) and leaves the window unchanged. When
    MAD = 0 any deviation from the median is flagged.

    State: a ring of the window's values with timestamps and the same values kept sorted.

    >>> # window 1, 1, 1, 1, 50 with k 5 -> median 1, MAD 0 -> the 50 is flagged
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        out[i] = 0
        if np.isnan(v):
            continue
        if not sorted_push(k, ts[i], v, vals, tss, head, count, sbuf, rows, span):
            return i
        if not is_warm(count, k, rows, min_periods):
            continue
        n = count[k]
        med = sorted_quantile(sbuf, k, n, 0.5)
        mad = sorted_mad(sbuf, k, n, med)
        if abs(v - med) > kscale * mad:
            out[i] = 1
    return key.shape[0]


# --------------------------------------------------------------------------- drawdown


@kernel("drawdown", inputs=("equity",), outputs=("drawdown", "max_drawdown"),
        state=lambda p: [Field("peak"), Field("mdd", (), np.float64, 0.0)],
        formula="drawdown = equity - running max; max_drawdown = running min of drawdown")
@njit(nogil=True, cache=True)
def drawdown(key, ts, equity, peak, mdd, out_dd, out_mdd):
    """Drawdown of an equity (or cumulative P&L) curve, in its own units.

    drawdown = equity - running max of equity (<= 0); max_drawdown = running min of drawdown
    (the deepest so far, <= 0). Output from the key's first valid value (both 0 there).
    A NaN input outputs NaN in both and leaves the state unchanged.

    State: ``peak`` (NaN until the first value) and ``mdd`` per key.

    >>> # equity 1, 3, 2, 0, 4 -> drawdown 0, 0, -1, -3, 0; max_drawdown 0, 0, -1, -3, -3
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = equity[i]
        if np.isnan(v):
            out_dd[i] = np.nan
            out_mdd[i] = np.nan
            continue
        if np.isnan(peak[k]) or v > peak[k]:
            peak[k] = v
        dd = v - peak[k]
        if dd < mdd[k]:
            mdd[k] = dd
        out_dd[i] = dd
        out_mdd[i] = mdd[k]
    return key.shape[0]
