"""Lead-lag (family "liquidity"): the cross-correlation lag between two series, from prefix
sums over rings so a row costs O(max_lag)."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import Field, Params, kernel


class XcorrParams(Params):
    """xcorr_leadlag: lags -max_lag..max_lag (max_lag >= 0) over a row window of >= 2 pairs."""

    max_lag: int = PydanticField(10, ge=0, description="largest lead/lag tested, in rows")
    window: int = PydanticField(100, ge=2, description="rows in the correlation window")

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("max_lag", "window"):
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be an integer, found {data[name]!r}")
        return data


XCORR_REBASE = 4
"""xcorr_leadlag rebuilds its prefix sums every this many ring-sizes of rows."""


def _xcorr_state(p: XcorrParams) -> list[Field]:
    cap = p.window + p.max_lag + 1
    return [*(Field(n, (cap,)) for n in ("xs", "ys")),
            *(Field(n, (cap,), np.float64, 0.0) for n in ("px", "pxx", "py", "pyy", "rx", "ry")),
            Field("pq", (cap, 2 * p.max_lag + 1), np.float64, 0.0),
            Field("seq", (), np.int64, 0), Field("since", (), np.int64, 0),
            Field("x_shift", (), np.float64, 0.0), Field("y_shift", (), np.float64, 0.0)]


@kernel("xcorr_leadlag", family="liquidity", params=XcorrParams, inputs=("x", "y"),
        outputs=("lead_lag", "lead_lag_corr"), state=_xcorr_state,
        args=lambda p: (p.max_lag, p.window),
        formula="the lag L in [-max_lag, max_lag] maximising |corr(x_t, y_{t-L})| over the window")
@njit(nogil=True, cache=True)
def xcorr_leadlag(key, ts, x, y, xs, ys, px, pxx, py, pyy, rx, ry, pq, seq, since, x_shift,
                  y_shift, out_lag, out_corr, max_lag, window):
    """Lead-lag by cross-correlation: the lag L in [-max_lag, max_lag] maximising
    |corr(x_t, y_{t-L})| over the last ``window`` pairs, and that (signed) correlation.

    For L >= 0 the pairs are (x_s, y_{s-L}) for the last ``window`` x values; for L < 0 they
    are (x_{s+L}, y_s) for the last ``window`` y values (no look-ahead). L > 0: y leads x.
    Rows where x and y are both valid form the series. Ties go to the smallest |L|, then to
    the positive L. A lag whose window has a constant side is skipped.

    Warm-up: NaN in both until the key holds ``window + max_lag`` valid pairs; NaN when every
    lag is skipped. A row with x or y NaN outputs NaN and changes nothing.

    State: rings of the last ``window + max_lag + 1`` pairs (slot = row number mod size),
    indexed by the key's row number ``seq``: the raw x and y, prefix sums of x - x_shift,
    its square, y - y_shift and its square, run lengths of equal x and of equal y, and per
    lag the prefix sum of the shifted products, each term filed under the later row of its
    pair. Every window sum is then a difference of two prefix values: O(max_lag) per row.
    Every 4 ring-sizes of rows the shifts move to the ring's means and the prefix sums are
    rebuilt from the raw values (their magnitude stays bounded): O(max_lag) amortised.
    """
    cap = xs.shape[1]
    total = window + max_lag
    nl = 2 * max_lag + 1
    fw = float(window)
    iw = 1.0 / fw
    wsx = np.empty(max_lag + 1)  # per-row scratch: window stats by end offset
    wvx = np.empty(max_lag + 1)
    wsy = np.empty(max_lag + 1)
    wvy = np.empty(max_lag + 1)
    for i in range(key.shape[0]):
        k = key[i]
        a = x[i]
        b = y[i]
        out_lag[i] = np.nan
        out_corr[i] = np.nan
        if np.isnan(a) or np.isnan(b):
            continue
        s = seq[k]
        j = s % cap
        jp = j - 1 if j > 0 else cap - 1
        if s == 0:
            x_shift[k] = a
            y_shift[k] = b
        xsh = x_shift[k]
        ysh = y_shift[k]
        xs[k, j] = a
        ys[k, j] = b
        dx = a - xsh
        dy = b - ysh
        if s > 0:
            rx[k, j] = rx[k, jp] + 1.0 if xs[k, jp] == a else 1.0
            ry[k, j] = ry[k, jp] + 1.0 if ys[k, jp] == b else 1.0
            px[k, j] = px[k, jp] + dx
            pxx[k, j] = pxx[k, jp] + dx * dx
            py[k, j] = py[k, jp] + dy
            pyy[k, j] = pyy[k, jp] + dy * dy
        else:
            rx[k, j] = 1.0
            ry[k, j] = 1.0
            px[k, j] = dx
            pxx[k, j] = dx * dx
            py[k, j] = dy
            pyy[k, j] = dy * dy
        if s >= max_lag and s > 0:  # every partner row exists: two branch-free loops
            for d in range(max_lag + 1):  # lag d >= 0: x_s (y_{s-d})
                jd = j - d if j >= d else j - d + cap
                pq[k, j, max_lag + d] = pq[k, jp, max_lag + d] + dx * (ys[k, jd] - ysh)
            for d in range(1, max_lag + 1):  # lag -d: (x_{s-d}) y_s
                jd = j - d if j >= d else j - d + cap
                pq[k, j, max_lag - d] = pq[k, jp, max_lag - d] + (xs[k, jd] - xsh) * dy
        else:
            for li in range(nl):
                lag = li - max_lag
                d = lag if lag >= 0 else -lag
                term = 0.0
                if s >= d:
                    jd = j - d if j >= d else j - d + cap
                    term = dx * (ys[k, jd] - ysh) if lag >= 0 else (xs[k, jd] - xsh) * dy
                pq[k, j, li] = (pq[k, jp, li] if s > 0 else 0.0) + term
        s += 1
        seq[k] = s
        since[k] += 1
        if since[k] >= XCORR_REBASE * cap:
            _xcorr_rebase(xs, ys, px, pxx, py, pyy, pq, x_shift, y_shift, k, s, max_lag)
            since[k] = 0
        if s < total:
            continue
        s -= 1  # the row number of this pair
        # the max_lag + 1 windows of x (and of y) ending at s - d: sum and centred sum of
        # squares, or -1 when constant (an exactly constant side skips the lag)
        for d in range(max_lag + 1):
            je = j - d if j >= d else j - d + cap
            jb = je - window if je >= window else je - window + cap
            early = s - d - window < 0
            sx = px[k, je] - (0.0 if early else px[k, jb])
            sxx = pxx[k, je] - (0.0 if early else pxx[k, jb])
            wsx[d] = sx
            wvx[d] = -1.0 if rx[k, je] >= fw else sxx - sx * sx * iw
            sy = py[k, je] - (0.0 if early else py[k, jb])
            syy = pyy[k, je] - (0.0 if early else pyy[k, jb])
            wsy[d] = sy
            wvy[d] = -1.0 if ry[k, je] >= fw else syy - sy * sy * iw
        jb = j - window if j >= window else j - window + cap
        early = s - window < 0
        best_num = -1.0
        best_den = 1.0
        best_cov = 0.0
        best_lag = 0
        for step in range(nl):
            lag = (step + 1) // 2
            if step % 2 == 0 and step > 0:
                lag = -lag
            dxe = -lag if lag < 0 else 0  # x window ends at s - dxe, y window at s - dye
            dye = lag if lag > 0 else 0
            vx = wvx[dxe]
            vy = wvy[dye]
            if not (vx > 0.0 and vy > 0.0):
                continue
            li = lag + max_lag
            sxy = pq[k, j, li] - (0.0 if early else pq[k, jb, li])
            # compare r^2 = num / den, num = cov^2 clamped at den (as r is clamped at 1),
            # by cross-multiplying (dens > 0); the division and root are taken once
            cov = sxy - wsx[dxe] * wsy[dye] * iw
            den = vx * vy
            num = cov * cov
            if num > den:
                num = den
            if num * best_den > best_num * den:
                best_num = num
                best_den = den
                best_cov = cov
                best_lag = lag
        if best_num >= 0.0:
            r = best_cov / np.sqrt(best_den)
            if r > 1.0:
                r = 1.0
            elif r < -1.0:
                r = -1.0
            out_lag[i] = best_lag
            out_corr[i] = r
    return key.shape[0]


@njit(nogil=True)
def _xcorr_rebase(xs, ys, px, pxx, py, pyy, pq, x_shift, y_shift, k, s, max_lag):
    """Move the shifts to the ring's means and rebuild every prefix sum from the raw values
    of the ``min(s, cap)`` pairs held (rows s - n .. s - 1); a product whose other row has
    left the ring counts 0 (no window that is read reaches it)."""
    cap = xs.shape[1]
    n = s if s < cap else cap
    j0 = (s - n) % cap  # slot of the oldest row held
    tx = 0.0
    ty = 0.0
    jv = j0
    for _ in range(n):
        tx += xs[k, jv]
        ty += ys[k, jv]
        jv = jv + 1 if jv + 1 < cap else 0
    xsh = tx / n
    ysh = ty / n
    x_shift[k] = xsh
    y_shift[k] = ysh
    ax = axx = ay = ayy = 0.0
    nl = 2 * max_lag + 1
    jv = j0
    for v in range(n):  # v: rows since the oldest held
        dx = xs[k, jv] - xsh
        dy = ys[k, jv] - ysh
        ax += dx
        axx += dx * dx
        ay += dy
        ayy += dy * dy
        px[k, jv] = ax
        pxx[k, jv] = axx
        py[k, jv] = ay
        pyy[k, jv] = ayy
        jp = jv - 1 if jv > 0 else cap - 1
        for li in range(nl):
            lag = li - max_lag
            d = lag if lag >= 0 else -lag
            term = 0.0
            if v >= d:
                jd = jv - d if jv >= d else jv - d + cap
                term = dx * (ys[k, jd] - ysh) if lag >= 0 else (xs[k, jd] - xsh) * dy
            pq[k, jv, li] = (pq[k, jp, li] if v > 0 else 0.0) + term
        jv = jv + 1 if jv + 1 < cap else 0
