"""Two-series windows (family "statistics"): rolling correlation and beta, and the EW
covariance."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import (
    AlphaParams,
    Field,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
)
from tickflow.kernels.stat_params import _window_args, min_row_window
from tickflow.kernels.window import (
    RECENTRE_MIN,
)

# --------------------------------------------------------------------------- pair windows


def pair_state(p: WindowParams) -> list[Field]:
    """A ring of (x, y) pairs with timestamps, shifted sums of x and of y, and their cross sum."""
    return (ring_fields(initial_capacity(p.window), values=("xs", "ys"))
            + moment_fields("x") + moment_fields("y") + [Field("sxy", (), np.float64, 0.0)])


@njit(nogil=True, cache=True)
def pair_walk(key, ts, x, y, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
              x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
              min_periods, what):
    """Rolling pair statistic: what 0 = Pearson correlation, 1 = cov / var(y) (OLS slope of x
    on y), 2 = Roll's spread 2 sqrt(-cov) (0 when cov >= 0). NaN when a needed variance is 0.
    Returns the row where a time-window ring is full (state saved, evictions kept), else n.

    Per pair: evict expired pairs (shifted sums of x, y and the cross sum lose them), add the
    pair, and after max(count, 32) pushes recompute the sums two-pass, re-centred on the
    window's means. Speed: a key's state stays in locals while consecutive rows share the key
    and is written back when the key changes (as ``averages.rolling_moments``); no helper
    taking arrays is called per row.
    """
    cap = xs.shape[1]
    n_rows = key.shape[0]
    k = -1
    h = c = xsn = ysn = xr = yr = 0
    xsh = xa = xb = xl = ysh = ya = yb = yl = cs = 0.0
    for i in range(n_rows):
        a = x[i]
        b = y[i]
        if np.isnan(a) or np.isnan(b):
            out[i] = np.nan
            continue
        if key[i] != k:
            if k >= 0:
                head[k], count[k], sxy[k] = h, c, cs
                x_shift[k], x_s1[k], x_s2[k], x_since[k], x_last[k], x_run[k] = (
                    xsh, xa, xb, xsn, xl, xr)
                y_shift[k], y_s1[k], y_s2[k], y_since[k], y_last[k], y_run[k] = (
                    ysh, ya, yb, ysn, yl, yr)
            k = key[i]
            h, c, cs = head[k], count[k], sxy[k]
            xsh, xa, xb, xsn, xl, xr = (x_shift[k], x_s1[k], x_s2[k], x_since[k], x_last[k],
                                        x_run[k])
            ysh, ya, yb, ysn, yl, yr = (y_shift[k], y_s1[k], y_s2[k], y_since[k], y_last[k],
                                        y_run[k])
        t = ts[i]
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            dxo = xs[k, h] - xsh
            dyo = ys[k, h] - ysh
            xa -= dxo
            xb -= dxo * dxo
            ya -= dyo
            yb -= dyo * dyo
            cs -= dxo * dyo
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # evictions are kept; the caller grows the ring and retries row i
            head[k], count[k], sxy[k] = h, c, cs
            x_shift[k], x_s1[k], x_s2[k], x_since[k], x_last[k], x_run[k] = (
                xsh, xa, xb, xsn, xl, xr)
            y_shift[k], y_s1[k], y_s2[k], y_since[k], y_last[k], y_run[k] = (
                ysh, ya, yb, ysn, yl, yr)
            return i
        pos = h + c
        if pos >= cap:
            pos -= cap
        xs[k, pos] = a
        ys[k, pos] = b
        tss[k, pos] = t
        if c == 0:
            xsh = a
            xa = 0.0
            xb = 0.0
            ysh = b
            ya = 0.0
            yb = 0.0
            cs = 0.0
        dx = a - xsh
        dy = b - ysh
        xa += dx
        xb += dx * dx
        ya += dy
        yb += dy * dy
        xsn += 1
        ysn += 1
        if a == xl:
            xr += 1
        else:
            xr = 1
            xl = a
        if b == yl:
            yr += 1
        else:
            yr = 1
            yl = b
        cs += dx * dy
        c += 1
        if xsn >= max(c, RECENTRE_MIN):  # two-pass sums, re-centred on the window's means
            tx = 0.0
            ty = 0.0
            j = h
            for _ in range(c):
                tx += xs[k, j]
                ty += ys[k, j]
                j = j + 1 if j + 1 < cap else 0
            xsh = tx / c
            ysh = ty / c
            xa = xb = ya = yb = cs = 0.0
            j = h
            for _ in range(c):
                dx = xs[k, j] - xsh
                dy = ys[k, j] - ysh
                xa += dx
                xb += dx * dx
                ya += dy
                yb += dy * dy
                cs += dx * dy
                j = j + 1 if j + 1 < cap else 0
            xsn = 0
            ysn = 0
        if (c < rows if rows > 0 else c < min_periods) or c < 2:
            out[i] = np.nan
            continue
        fn = float(c)
        cov = (cs - xa * ya / fn) / (fn - 1.0)
        if what == 2:
            out[i] = 2.0 * np.sqrt(-cov) if cov < 0.0 else 0.0
            continue
        vy = 0.0 if yr >= c else (yb - ya * ya / fn) / (fn - 1.0)
        if what == 1:
            out[i] = cov / vy if vy > 0.0 else np.nan
            continue
        vx = 0.0 if xr >= c else (xb - xa * xa / fn) / (fn - 1.0)
        if not (vx > 0.0 and vy > 0.0):
            out[i] = np.nan
            continue
        rho = cov / np.sqrt(vx * vy)
        if rho > 1.0:
            rho = 1.0
        elif rho < -1.0:
            rho = -1.0
        out[i] = rho
    if k >= 0:
        head[k], count[k], sxy[k] = h, c, cs
        x_shift[k], x_s1[k], x_s2[k], x_since[k], x_last[k], x_run[k] = (
            xsh, xa, xb, xsn, xl, xr)
        y_shift[k], y_s1[k], y_s2[k], y_since[k], y_last[k], y_run[k] = (
            ysh, ya, yb, ysn, yl, yr)
    return n_rows


class RollingCorrParams(WindowParams):
    """rolling_corr / rolling_beta: a (T) window; row windows need >= 2 pairs."""

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the rolling regression")

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingCorrParams:
        min_row_window(self, 2)
        return self


@kernel("rolling_corr", family="statistics",
        params=RollingCorrParams, inputs=("x", "y"), outputs=("corr",),
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


@kernel("rolling_beta", family="statistics",
        params=RollingCorrParams, inputs=("x", "y"), outputs=("beta",),
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


@kernel("ewcov", family="statistics", params=EwcovParams, inputs=("x", "y"), outputs=("ewcov",),
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
