"""Rolling autocorrelation (family "volatility"): Pearson correlation of a series with itself
``lag`` valid rows earlier, from shifted running sums."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import Field, Params, kernel, moment_fields, ring_fields
from tickflow.kernels.window import RECOMPUTE, recentred_sums


class AutocorrParams(Params):
    """autocorr: lag >= 1 and a row window of window >= 2 pairs."""

    lag: int = PydanticField(5, ge=1, description="lag of the autocorrelation, in rows")
    window: int = PydanticField(100, ge=2, description="rows in the correlation window")


def _autocorr_state(p: AutocorrParams) -> list[Field]:
    return (ring_fields(p.lag, values=("lag_vals",), group="lag", with_ts=False, per_row=True)
            + ring_fields(p.window, values=("xs", "ys"), with_ts=False, per_row=True)
            + moment_fields("x") + moment_fields("y") + [Field("sxy", fill=0.0)])


@kernel("autocorr", family="volatility", params=AutocorrParams, inputs=("log_return",),
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
