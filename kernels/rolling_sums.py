"""The rolling-sum walk shared by the volatility and liquidity kernels (realized and bipower
variance, Amihud illiquidity): one loop over a row or time window of per-row values."""

from __future__ import annotations

import numpy as np
from numba import njit

from tickflow.kernels.window import PEAK_RATIO, RECOMPUTE, recentred_sums

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
        if rows == 0:  # a row window's tss is a zero-wide stub
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
