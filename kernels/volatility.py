"""Volatility: realized and bipower variance, RiskMetrics, rolling std, Welford, autocorrelation."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import ConfigDict
from pydantic import Field as PydanticField

from kernels.averages import rolling_moments
from kernels.base import (
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
    mom_recompute,
    mom_remove,
    mom_var,
    ring_advance,
    ring_at,
    ring_expired,
    ring_slot,
)


def _ring_moment_state(p: WindowParams) -> list[Field]:
    return ring_fields(initial_capacity(p.window)) + moment_fields()


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


@njit(inline="always", nogil=True)
def window_sum_push(k, t, v, vals, tss, head, count, shift, s1, s2, since, last, run, rows,
                    span, min_periods):
    """Evict what leaves a row/time window, add ``v`` and return ``(True, sum)``.

    The sum is NaN until warm; a constant window gives exactly n * value. Returns
    ``(False, nan)`` without adding anything when a time-window ring is full (evictions are
    idempotent, so the caller may grow the ring and retry the row).
    """
    cap = vals.shape[1]
    while ring_expired(tss, head, count, k, t, rows, span):
        mom_remove(shift, s1, s2, k, vals[k, head[k]])
        ring_advance(head, count, k, cap)
    if count[k] == cap:
        return False, np.nan
    pos = ring_slot(head, count, k, cap)
    vals[k, pos] = v
    tss[k, pos] = t
    mom_add(shift, s1, s2, since, last, run, k, v, count[k])
    count[k] += 1
    if since[k] >= RECOMPUTE:
        mom_recompute(shift, s1, s2, since, k, vals, head, count)
    n = count[k]
    if not is_warm(count, k, rows, min_periods):
        return True, np.nan
    if run[k] >= n:
        return True, last[k] * n
    s = shift[k] * n + s1[k]
    return True, s if s > 0.0 else 0.0


class RealizedVarParams(WindowParams):
    window: Window = 20


@kernel("realized_var", params=RealizedVarParams, inputs=("log_return",),
        outputs=("realized_var",), state=_ring_moment_state, args=_window_args,
        time_window=True, formula="sum of r^2 over the window")
@njit(nogil=True, cache=True)
def realized_var(key, ts, r, vals, tss, head, count, shift, s1, s2, since, last, run, out,
                 rows, span, min_periods):
    """Realized variance: the sum of squared returns over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: a ring of r^2 with timestamps, and shifted running sums (periodically recomputed).

    >>> # r = 0.01, 0.02 with window 2 -> NaN, 0.0005
    """
    for i in range(key.shape[0]):
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        ok, s = window_sum_push(key[i], ts[i], v * v, vals, tss, head, count, shift, s1, s2,
                                since, last, run, rows, span, min_periods)
        if not ok:
            return i
        out[i] = s
    return key.shape[0]


class BipowerVarParams(WindowParams):
    window: Window = 20


def _bipower_state(p: BipowerVarParams) -> list[Field]:
    return [Field("prev_abs"), *_ring_moment_state(p)]


@kernel("bipower_var", params=BipowerVarParams, inputs=("log_return",),
        outputs=("bipower_var",), state=_bipower_state, args=_window_args, time_window=True,
        formula="(pi / 2) sum |r_t| |r_{t-1}| over the pairs whose later element is in the window")
@njit(nogil=True, cache=True)
def bipower_var(key, ts, r, prev_abs, vals, tss, head, count, shift, s1, s2, since, last, run,
                out, rows, span, min_periods):
    """Bipower variation (Barndorff-Nielsen & Shephard 2004): (pi / 2) sum |r_t| |r_{t-1}|.

    A pair is two consecutive valid returns of a key; it belongs to the time and row of its
    later element. The window holds the last ``window`` pairs (rows) or the pairs whose later
    element has timestamp in (t - window, t] (time). Warm-up: NaN until the window holds
    ``window`` pairs (so the first value comes on the key's ``window + 1``-th valid return), or
    ``min_periods`` pairs for time windows. A NaN return outputs NaN and changes nothing; the
    key's first valid return outputs NaN (no pair yet).

    State: ``prev_abs`` (|r| of the last valid return), a ring of pair products with
    timestamps, and shifted running sums.

    >>> # r = 0.01, -0.02, 0.03 with window 2 -> NaN, NaN, (pi/2) * (0.0002 + 0.0006)
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        a = abs(v)
        if np.isnan(prev_abs[k]):
            prev_abs[k] = a
            out[i] = np.nan
            continue
        ok, s = window_sum_push(k, ts[i], a * prev_abs[k], vals, tss, head, count, shift, s1, s2,
                                since, last, run, rows, span, min_periods)
        if not ok:
            return i  # prev_abs untouched: the row is retried after the ring grows
        prev_abs[k] = a
        out[i] = np.pi / 2.0 * s
    return key.shape[0]


class RiskMetricsParams(Params):
    """riskmetrics_vol: the decay ``lambda`` (0 <= lambda < 1), written ``lambda`` in YAML."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    lambda_: float = PydanticField(0.94, alias="lambda", ge=0.0, lt=1.0)


@kernel("riskmetrics_vol", params=RiskMetricsParams, inputs=("log_return",),
        outputs=("riskmetrics_vol",), state=lambda p: [Field("s2")],
        args=lambda p: (p.lambda_,),
        formula="s2_0 = r_0^2; s2_t = lambda s2_{t-1} + (1 - lambda) r_t^2; sqrt(s2_t)")
@njit(nogil=True, cache=True)
def riskmetrics_vol(key, ts, r, s2, out, lam):
    """RiskMetrics (J.P. Morgan 1996) exponentially weighted volatility.

    s2_0 = r_0^2 on the key's first valid return; s2_t = lambda s2_{t-1} + (1 - lambda) r_t^2;
    output sqrt(s2_t) from the first valid return on. A NaN return outputs NaN and leaves s2
    unchanged.

    State: ``s2`` per key (NaN until seeded).

    >>> # r = 0.01, 0.0 with lambda 0.5 -> 0.01, sqrt(0.00005)
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if np.isnan(s2[k]):
            s2[k] = v * v
        else:
            s2[k] = lam * s2[k] + (1.0 - lam) * v * v
        out[i] = np.sqrt(s2[k])
    return key.shape[0]


class RollingStdParams(WindowParams):
    window: Window = 20


@kernel("rolling_std", params=RollingStdParams, inputs=("log_return",),
        outputs=("{input}_std{window}",), state=_ring_moment_state, args=_window_args,
        time_window=True, formula="sample std (ddof 1) over the window")
@njit(nogil=True, cache=True)
def rolling_std(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, out,
                rows, span, min_periods):
    """Rolling sample standard deviation (ddof 1) over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time); a one-value window is NaN (ddof 1); a constant window is exactly 0. A NaN input
    outputs NaN and leaves the window unchanged.

    State: a ring of the window's values and shifted running sums.

    >>> # x = 1, 2, 4 with window 3 -> NaN, NaN, 1.5275...
    """
    scratch = np.empty(key.shape[0])
    return rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                           scratch, out, rows, span, min_periods, 1)


@kernel("welford_mean_var", inputs=("price",), outputs=("mean", "variance", "stddev"),
        state=lambda p: [Field("n", dtype=np.int64, fill=0), Field("mean", fill=0.0),
                         Field("m2", fill=0.0)],
        formula="expanding mean, sample variance and std by Welford's update")
@njit(nogil=True, cache=True)
def welford_mean_var(key, ts, x, n, mean, m2, out_mean, out_var, out_std):
    """Expanding mean, sample variance (ddof 1) and std of the key's history (Welford 1962).

    n += 1; d = x - mean; mean += d / n; M2 += d (x - mean); variance = M2 / (n - 1).
    The mean is output from the first valid value, variance and std from the second. A NaN
    input outputs NaN in all three and leaves the state unchanged.

    State: ``n`` (count), ``mean`` and ``m2`` per key.

    >>> # x = 1, 2, 3 -> mean 1, 1.5, 2; variance NaN, 0.5, 1
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out_mean[i] = np.nan
            out_var[i] = np.nan
            out_std[i] = np.nan
            continue
        n[k] += 1
        d = v - mean[k]
        mean[k] += d / n[k]
        m2[k] += d * (v - mean[k])
        out_mean[i] = mean[k]
        if n[k] < 2:
            out_var[i] = np.nan
            out_std[i] = np.nan
        else:
            var = m2[k] / (n[k] - 1)
            if var < 0.0:
                var = 0.0
            out_var[i] = var
            out_std[i] = np.sqrt(var)
    return key.shape[0]


class AutocorrParams(Params):
    """autocorr: lag >= 1 and a row window of window >= 2 pairs."""

    lag: int = PydanticField(5, ge=1)
    window: int = PydanticField(100, ge=2)


def _autocorr_state(p: AutocorrParams) -> list[Field]:
    return (ring_fields(p.lag, values=("lag_vals",), group="lag", with_ts=False)
            + ring_fields(p.window, values=("xs", "ys"), with_ts=False)
            + moment_fields("x") + moment_fields("y") + [Field("sxy", fill=0.0)])


@njit(nogil=True)
def _cross_recompute(xs, ys, head, count, k, x_shift, y_shift, sxy):
    cap = xs.shape[1]
    c = 0.0
    for j in range(count[k]):
        p = ring_at(head, k, cap, j)
        c += (xs[k, p] - x_shift[k]) * (ys[k, p] - y_shift[k])
    sxy[k] = c


@kernel("autocorr", params=AutocorrParams, inputs=("log_return",),
        outputs=("{input}_autocorr{lag}",), state=_autocorr_state,
        args=lambda p: (p.lag, p.window),
        formula="Pearson correlation of (x_t, x_{t-lag}) over the last window pairs")
@njit(nogil=True, cache=True)
def autocorr(key, ts, x, lag_vals, lag_head, lag_count, xs, ys, head, count,
             x_shift, x_s1, x_s2, x_since, x_last, x_run,
             y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, lag, window):
    """Rolling autocorrelation: Pearson correlation of (x_t, x_{t-lag}) over the last pairs.

    x_{t-lag} is the value ``lag`` valid rows earlier in the key; a pair exists from the key's
    ``lag + 1``-th valid value on. Warm-up: NaN until the window holds ``window`` pairs. NaN
    when either side's std over the window is 0. A NaN input outputs NaN and changes nothing.

    State: a ring of the last ``lag`` values, a ring of the window's pairs, shifted running
    sums of x and of the lagged x (periodically recomputed), and their cross sum.

    >>> # x = 1, 2, 3, 4 with lag 1, window 3 -> NaN, NaN, NaN, 1.0
    """
    lcap = lag_vals.shape[1]
    cap = xs.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if lag_count[k] < lag:
            lag_vals[k, ring_slot(lag_head, lag_count, k, lcap)] = v
            lag_count[k] += 1
            out[i] = np.nan
            continue
        w = lag_vals[k, lag_head[k]]
        ring_advance(lag_head, lag_count, k, lcap)
        lag_vals[k, ring_slot(lag_head, lag_count, k, lcap)] = v
        lag_count[k] += 1
        if count[k] >= window:
            o = head[k]
            mom_remove(x_shift, x_s1, x_s2, k, xs[k, o])
            mom_remove(y_shift, y_s1, y_s2, k, ys[k, o])
            sxy[k] -= (xs[k, o] - x_shift[k]) * (ys[k, o] - y_shift[k])
            ring_advance(head, count, k, cap)
        pos = ring_slot(head, count, k, cap)
        xs[k, pos] = v
        ys[k, pos] = w
        c = count[k]
        mom_add(x_shift, x_s1, x_s2, x_since, x_last, x_run, k, v, c)
        mom_add(y_shift, y_s1, y_s2, y_since, y_last, y_run, k, w, c)
        if c == 0:
            sxy[k] = 0.0
        sxy[k] += (v - x_shift[k]) * (w - y_shift[k])
        count[k] += 1
        if x_since[k] >= RECOMPUTE:
            mom_recompute(x_shift, x_s1, x_s2, x_since, k, xs, head, count)
            mom_recompute(y_shift, y_s1, y_s2, y_since, k, ys, head, count)
            _cross_recompute(xs, ys, head, count, k, x_shift, y_shift, sxy)
        n = count[k]
        if n < window:
            out[i] = np.nan
            continue
        vx = mom_var(x_s1, x_s2, x_run, k, n, 1)
        vy = mom_var(y_s1, y_s2, y_run, k, n, 1)
        if not (vx > 0.0 and vy > 0.0):
            out[i] = np.nan
            continue
        cov = (sxy[k] - x_s1[k] * y_s1[k] / n) / (n - 1)
        rho = cov / np.sqrt(vx * vy)
        if rho > 1.0:
            rho = 1.0
        elif rho < -1.0:
            rho = -1.0
        out[i] = rho
    return key.shape[0]
