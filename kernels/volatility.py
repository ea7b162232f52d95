"""Volatility: realized and bipower variance, RiskMetrics, rolling std, Welford, autocorrelation."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import ConfigDict
from pydantic import Field as PydanticField

from tickflow.kernels.averages import ring_moment_peak_state, rolling_moments
from tickflow.kernels.base import (
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
from tickflow.kernels.window import PEAK_RATIO, RECOMPUTE, recentred_sums


def _ring_moment_state(p: WindowParams) -> list[Field]:
    # one push per row (rolling_sum_walk): a row window's ring is sized by the key's rows
    return (ring_fields(initial_capacity(p.window), per_row=isinstance(p.window, int))
            + moment_fields())


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


SUM_OF_VALUES = 0
SUM_OF_SQUARES = 1
SUM_OF_BIPOWER = 2
MEAN_OF_VALUES = 3


@njit(nogil=True, cache=True)
def rolling_sum_walk(key, ts, x, prev_abs, vals, tss, head, count, shift, s1, s2, since, last,
                     run, out, rows, span, min_periods, mode):
    """Rolling sum over a row or time window of per-row values derived from ``x`` by ``mode``:
    SUM_OF_VALUES (x), SUM_OF_SQUARES (x^2), SUM_OF_BIPOWER ((pi / 2) |x_t| |x_{t-1}| of a
    key's consecutive valid values; ``prev_abs`` holds |x| of the key's last valid value, and
    the output is scaled by pi / 2) or MEAN_OF_VALUES (the sum of x divided by the window's
    count). The output is NaN until warm; a constant window gives exactly n * value; the
    sum is clipped at 0 (the callers sum non-negative values: below 0 is rounding residue).

    Precision: the sums are kept as ``sh c + a``; ``s2`` holds the peak of ``|sh| c + |a|``
    since the last two-pass recompute (this walk needs no second moment), which add/remove
    rounding is relative to. When it exceeds PEAK_RATIO times the sum (a large value left a
    window of small ones) the sum is recomputed from the ring before the row's output.

    Returns the row index where a time-window ring is full (the caller grows it), else n. The
    key's state lives in locals for the row and is stored once: array-taking helpers in this
    loop cost numba reference counting per call, and stores through possibly aliasing arrays
    make the compiler reload.
    """
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        k = key[i]
        if mode == SUM_OF_SQUARES:
            v = v * v
        elif mode == SUM_OF_BIPOWER:
            ab = abs(v)
            pa = prev_abs[k]
            if np.isnan(pa):
                prev_abs[k] = ab
                out[i] = np.nan
                continue
            v = ab * pa
        t = ts[i]
        c = count[k]
        h = head[k]
        sh = shift[k]
        a = s1[k]
        b = s2[k]
        if rows > 0:
            while c >= rows:
                a -= vals[k, h] - sh
                h = h + 1 if h + 1 < cap else 0
                c -= 1
        else:
            limit = t - span
            while c > 0 and tss[k, h] <= limit:
                a -= vals[k, h] - sh
                h = h + 1 if h + 1 < cap else 0
                c -= 1
            if c == cap:  # evictions are kept (prev_abs is not): the row is retried
                count[k] = c
                head[k] = h
                s1[k] = a
                s2[k] = b
                return i
        if c == 0:
            sh = v
            a = 0.0
            b = 0.0
        pos = h + c
        if pos >= cap:
            pos -= cap
        vals[k, pos] = v
        tss[k, pos] = t
        a += v - sh
        # b: the peak of |sh| c + |a|, what add/remove rounding is relative to
        scale = abs(sh) * (c + 1) + abs(a)
        if scale > b:
            b = scale
        n_since = since[k] + 1
        lst = last[k]
        if v == lst:
            r = run[k] + 1
        else:
            r = 1
            lst = v
            last[k] = v
        c += 1
        if n_since >= RECOMPUTE:
            sh, a, _ = recentred_sums(vals, k, h, c)
            b = abs(sh) * c + abs(a)
            n_since = 0
        count[k] = c
        head[k] = h
        shift[k] = sh
        s1[k] = a
        s2[k] = b
        since[k] = n_since
        run[k] = r
        if mode == SUM_OF_BIPOWER:
            prev_abs[k] = abs(x[i])
        if c < rows if rows > 0 else c < min_periods:
            s = np.nan
        elif r >= c:
            s = lst * c
        else:
            s = sh * c + a
            if b > PEAK_RATIO * s:  # the sum fell far below its peak: digits cancelled
                sh, a, _ = recentred_sums(vals, k, h, c)
                b = abs(sh) * c + abs(a)
                n_since = 0
                s1[k] = a
                shift[k] = sh
                s2[k] = b
                since[k] = n_since
                s = sh * c + a
            if not s > 0.0:
                s = 0.0
        if mode == SUM_OF_BIPOWER:
            s = np.pi / 2.0 * s
        elif mode == MEAN_OF_VALUES:
            s = s / c
        out[i] = s
    return key.shape[0]


class RealizedVarParams(WindowParams):
    window: Window = PydanticField(20, description="rows (or a duration) of summed squared returns")


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
    return rolling_sum_walk(key, ts, r, r, vals, tss, head, count, shift, s1, s2, since, last,
                            run, out, rows, span, min_periods, SUM_OF_SQUARES)


class BipowerVarParams(WindowParams):
    window: Window = PydanticField(20,
                                   description="rows (or a duration) of summed adjacent |return| "
                                               "products")


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
    return rolling_sum_walk(key, ts, r, prev_abs, vals, tss, head, count, shift, s1, s2, since,
                            last, run, out, rows, span, min_periods, SUM_OF_BIPOWER)


class RiskMetricsParams(Params):
    """riskmetrics_vol: the decay ``lambda`` (0 <= lambda < 1), written ``lambda`` in YAML."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    lambda_: float = PydanticField(0.94, alias="lambda", ge=0.0, lt=1.0,
                                   description="decay factor of the variance EWMA (RiskMetrics: "
                                               "0.94)")


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
    window: Window = PydanticField(20,
                                   description="rows (or a duration) of the rolling standard "
                                               "deviation")


@kernel("rolling_std", params=RollingStdParams, inputs=("log_return",),
        outputs=("{input}_std{window}",), state=ring_moment_peak_state, args=_window_args,
        time_window=True, formula="sample std (ddof 1) over the window")
@njit(nogil=True, cache=True)
def rolling_std(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, peak,
                out, rows, span, min_periods):
    """Rolling sample standard deviation (ddof 1) over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time); a one-value window is NaN (ddof 1); a constant window is exactly 0. A NaN input
    outputs NaN and leaves the window unchanged.

    State: a ring of the window's values, shifted running sums and their peak
    (``averages.rolling_moments``).

    >>> # x = 1, 2, 4 with window 3 -> NaN, NaN, 1.5275...
    """
    scratch = np.empty(key.shape[0])
    return rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                           peak, scratch, out, rows, span, min_periods, 1)


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

    lag: int = PydanticField(5, ge=1, description="lag of the autocorrelation, in rows")
    window: int = PydanticField(100, ge=2, description="rows in the correlation window")


def _autocorr_state(p: AutocorrParams) -> list[Field]:
    return (ring_fields(p.lag, values=("lag_vals",), group="lag", with_ts=False, per_row=True)
            + ring_fields(p.window, values=("xs", "ys"), with_ts=False, per_row=True)
            + moment_fields("x") + moment_fields("y") + [Field("sxy", fill=0.0)])


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
        lh = lag_head[k]
        lc = lag_count[k]
        if lc < lag:
            pos = lh + lc
            if pos >= lcap:
                pos -= lcap
            lag_vals[k, pos] = v
            lag_count[k] = lc + 1
            out[i] = np.nan
            continue
        # a full lag ring: the oldest value leaves and v takes its slot
        w = lag_vals[k, lh]
        lag_vals[k, lh] = v
        lag_head[k] = lh + 1 if lh + 1 < lcap else 0
        h = head[k]
        c = count[k]
        xsh = x_shift[k]
        xa = x_s1[k]
        xb = x_s2[k]
        ysh = y_shift[k]
        ya = y_s1[k]
        yb = y_s2[k]
        cxy = sxy[k]
        if c >= window:
            xo = xs[k, h]
            yo = ys[k, h]
            d = xo - xsh
            xa -= d
            xb -= d * d
            d = yo - ysh
            ya -= d
            yb -= d * d
            cxy -= (xo - xsh) * (yo - ysh)
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        pos = h + c
        if pos >= cap:
            pos -= cap
        xs[k, pos] = v
        ys[k, pos] = w
        if c == 0:
            xsh = v
            xa = 0.0
            xb = 0.0
            ysh = w
            ya = 0.0
            yb = 0.0
            cxy = 0.0
        d = v - xsh
        xa += d
        xb += d * d
        d = w - ysh
        ya += d
        yb += d * d
        x_since_k = x_since[k] + 1
        y_since_k = y_since[k] + 1
        xl = x_last[k]
        if v == xl:
            xr = x_run[k] + 1
        else:
            xr = 1
            x_last[k] = v
        yl = y_last[k]
        if w == yl:
            yr = y_run[k] + 1
        else:
            yr = 1
            y_last[k] = w
        cxy += (v - xsh) * (w - ysh)
        c += 1
        if x_since_k >= RECOMPUTE:
            xsh, xa, xb = recentred_sums(xs, k, h, c)
            ysh, ya, yb = recentred_sums(ys, k, h, c)
            x_since_k = 0
            y_since_k = 0
            cxy = 0.0
            j = h
            for _ in range(c):
                cxy += (xs[k, j] - xsh) * (ys[k, j] - ysh)
                j = j + 1 if j + 1 < cap else 0
        head[k] = h
        count[k] = c
        x_shift[k] = xsh
        x_s1[k] = xa
        x_s2[k] = xb
        y_shift[k] = ysh
        y_s1[k] = ya
        y_s2[k] = yb
        sxy[k] = cxy
        x_since[k] = x_since_k
        y_since[k] = y_since_k
        x_run[k] = xr
        y_run[k] = yr
        if c < window:
            out[i] = np.nan
            continue
        # sample variances (ddof 1), exactly 0 for a constant window (c >= window >= 2)
        if xr >= c:
            vx = 0.0
        else:
            vx = (xb - xa * xa / c) / (c - 1)
            if vx < 0.0:
                vx = 0.0
        if yr >= c:
            vy = 0.0
        else:
            vy = (yb - ya * ya / c) / (c - 1)
            if vy < 0.0:
                vy = 0.0
        if not (vx > 0.0 and vy > 0.0):
            out[i] = np.nan
            continue
        cov = (cxy - xa * ya / c) / (c - 1)
        rho = cov / np.sqrt(vx * vy)
        if rho > 1.0:
            rho = 1.0
        elif rho < -1.0:
            rho = -1.0
        out[i] = rho
    return key.shape[0]
