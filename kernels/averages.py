"""Moving averages: the EMA family, SMA and the rolling z-score."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    AlphaParams,
    Field,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from tickflow.kernels.window import PEAK_RATIO, RECENTRE_MIN, recentred_sums


@njit(nogil=True, cache=True)
def ema_update(key, x, m, out, alpha):
    """m_0 = x_0; m_t = alpha x_t + (1 - alpha) m_{t-1}; NaN input leaves m unchanged."""
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if np.isnan(m[k]):
            m[k] = v
        else:
            m[k] = alpha * v + (1.0 - alpha) * m[k]
        out[i] = m[k]
    return key.shape[0]


class EwmaParams(AlphaParams):
    """ewma: alpha 0.06 unless a span or half_life is given."""

    def kernel_alpha(self) -> float:
        return self.resolved_alpha(default_alpha=0.06)


class EmaParams(AlphaParams):
    """ema: span 12 unless an alpha or half_life is given."""

    def kernel_alpha(self) -> float:
        return self.resolved_alpha(default_span=12)


@kernel("ewma", params=EwmaParams, inputs=("price",), outputs=("ewma",),
        state=lambda p: [Field("m")], args=lambda p: (p.kernel_alpha(),),
        formula="m_0 = x_0; m_t = alpha x_t + (1 - alpha) m_{t-1} (alpha 0.06)")
@njit(nogil=True, cache=True)
def ewma(key, ts, x, m, out, alpha):
    """Exponentially weighted moving average (EMA family, default alpha 0.06).

    State: ``m`` per key, NaN until the first valid value seeds it.

    >>> # prices 1, 2 with alpha 0.5 -> 1.0, 1.5
    """
    return ema_update(key, x, m, out, alpha)


@kernel("ema", params=EmaParams, inputs=("price",), outputs=("ema",),
        state=lambda p: [Field("m")], args=lambda p: (p.kernel_alpha(),),
        formula="EMA family with alpha = 2 / (span + 1) (span 12)")
@njit(nogil=True, cache=True)
def ema(key, ts, x, m, out, alpha):
    """Exponential moving average by span (default 12), seeded with the first value.

    State: ``m`` per key.
    """
    return ema_update(key, x, m, out, alpha)


def ring_moment_peak_state(p: WindowParams) -> list[Field]:
    """A ring of the window's values, shifted running sums and their peak (rolling_moments).

    One push per row: a row window's ring is sized by the key's rows, up to the window.
    """
    return (ring_fields(initial_capacity(p.window), per_row=isinstance(p.window, int),
                         stub_ts=isinstance(p.window, int))
            + moment_fields() + [Field("m_peak", (), np.float64, 0.0)])


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


@njit(nogil=True, cache=True)
def rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                    peak, out_mean, out_std, rows, span, min_periods, ddof, with_std=True,
                    deviation=False):
    """Walk rows, keep the window, write mean and std (ddof) once warm; NaN otherwise.

    Returns the row index where a time-window ring is full (the caller grows it), else n.
    ``with_std=False`` leaves ``out_std`` unwritten on warm rows (sma needs only the mean).
    ``deviation=True`` writes x - mean instead of the mean, as (x - shift) - s1 / n: exact to
    the spread's digits where x - mean of prices near 1e5 would keep only the price's.
    A constant window's mean is exactly its value.

    Speed (this loop serves sma, rolling_std, rolling_zscore and bollinger_bands): a key's
    state stays in locals while consecutive rows share the key and is written back when the
    key changes (going through the arrays on every update was five times slower: they may
    alias, so the compiler reloads them after each store); a full row window swaps its oldest
    value for the new one with one add per running sum, the only row-to-row dependency.

    Precision: ``peak`` is the largest shifted sum of squares since the last two-pass
    recompute; add/remove rounding is relative to it, so when it exceeds PEAK_RATIO times the
    window's centred sum of squares (a large value left, or a drift left the shift behind)
    the sums are recomputed from the ring before the row's std.
    """
    cap = vals.shape[1]
    n = key.shape[0]
    k = -1
    c = h = n_since = r = 0
    sh = a = b = lst = pk = 0.0
    for i in range(n):
        v = x[i]
        if np.isnan(v):
            out_mean[i] = np.nan
            out_std[i] = np.nan
            continue
        if key[i] != k:
            if k >= 0:
                count[k], head[k], shift[k], s1[k], s2[k] = c, h, sh, a, b
                since[k], run[k], last[k], peak[k] = n_since, r, lst, pk
            k = key[i]
            c, h, sh, a, b = count[k], head[k], shift[k], s1[k], s2[k]
            n_since, r, lst, pk = since[k], run[k], last[k], peak[k]
        if rows > 1 and c == rows and cap == rows:
            # a full row window: the new value takes the oldest one's slot (time stamps are
            # not kept, row windows never read them)
            old = vals[k, h] - sh
            vals[k, h] = v
            h = h + 1 if h + 1 < cap else 0
            d = v - sh
            a += d - old
            b += d * d - old * old
        else:
            t = ts[i]
            if rows > 0:
                while c >= rows:
                    d = vals[k, h] - sh
                    a -= d
                    b -= d * d
                    h = h + 1 if h + 1 < cap else 0
                    c -= 1
            else:
                limit = t - span
                while c > 0 and tss[k, h] <= limit:
                    d = vals[k, h] - sh
                    a -= d
                    b -= d * d
                    h = h + 1 if h + 1 < cap else 0
                    c -= 1
                if c == cap:  # evictions are kept; the caller grows the ring and retries row i
                    count[k], head[k], shift[k], s1[k], s2[k] = c, h, sh, a, b
                    since[k], run[k], last[k], peak[k] = n_since, r, lst, pk
                    return i
            if c == 0:
                sh = v
                a = 0.0
                b = 0.0
                pk = 0.0
            pos = h + c
            if pos >= cap:
                pos -= cap
            vals[k, pos] = v
            if rows == 0:  # a row window's tss is a zero-wide stub
                tss[k, pos] = t
            d = v - sh
            a += d
            b += d * d
            c += 1
        if b > pk:
            pk = b
        n_since += 1
        r = r + 1 if v == lst else 1
        lst = v
        if n_since >= max(c, RECENTRE_MIN):
            sh, a, b = recentred_sums(vals, k, h, c)
            pk = b
            n_since = 0
        if c >= rows if rows > 0 else c >= min_periods:
            out_mean[i] = (v - sh) - a / c if deviation else sh + a / c
            if r >= c:
                out_mean[i] = 0.0 if deviation else lst
            if not with_std:
                pass
            elif c - ddof <= 0:
                out_std[i] = np.nan
            elif r >= c:
                out_std[i] = 0.0
            else:
                m2 = b - a * a / c
                if pk > PEAK_RATIO * m2:
                    sh, a, b = recentred_sums(vals, k, h, c)
                    pk = b
                    n_since = 0
                    out_mean[i] = (v - sh) - a / c if deviation else sh + a / c
                    m2 = b - a * a / c
                var = m2 / (c - ddof)
                out_std[i] = np.sqrt(var) if var > 0.0 else 0.0
        else:
            out_mean[i] = np.nan
            out_std[i] = np.nan
    if k >= 0:
        count[k], head[k], shift[k], s1[k], s2[k] = c, h, sh, a, b
        since[k], run[k], last[k], peak[k] = n_since, r, lst, pk
    return n


class SmaParams(WindowParams):
    window: Window = PydanticField(20,
                                   description="rows (or a duration such as 30s) in the moving "
                                               "average")


def _sma_state(p: SmaParams) -> list[Field]:
    return [*ring_fields(initial_capacity(p.window), per_row=isinstance(p.window, int),
                         stub_ts=isinstance(p.window, int)),
            Field("m_shift", (), np.float64, 0.0),
            Field("m_s1", (), np.float64, 0.0), Field("m_since", (), np.int64, 0)]


@kernel("sma", params=SmaParams, inputs=("price",), outputs=("sma",),
        state=_sma_state, args=_window_args, time_window=True,
        formula="mean of the window")
@njit(nogil=True, cache=True)
def sma(key, ts, x, vals, tss, head, count, shift, s1, since, out, rows, span, min_periods):
    """Simple moving average over a row or time window; NaN until warm.

    State: a ring of the window's values (with timestamps) and the shifted running sum of
    ``x - shift``, re-centred two-pass on the window's mean after max(count, 32) pushes.

    Speed: ``rolling_moments`` without the second moment and the run length (the mean needs
    neither; the arithmetic of the mean is the same, so are its bits); a key's state stays in
    locals while consecutive rows share the key.
    """
    cap = vals.shape[1]
    n = key.shape[0]
    k = -1
    c = h = n_since = 0
    sh = a = 0.0
    for i in range(n):
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if key[i] != k:
            if k >= 0:
                count[k], head[k], shift[k], s1[k], since[k] = c, h, sh, a, n_since
            k = key[i]
            c, h, sh, a, n_since = count[k], head[k], shift[k], s1[k], since[k]
        if rows > 1 and c == rows and cap == rows:
            # a full row window: the new value takes the oldest one's slot
            old = vals[k, h] - sh
            vals[k, h] = v
            h = h + 1 if h + 1 < cap else 0
            d = v - sh
            a += d - old
        else:
            t = ts[i]
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
                if c == cap:  # evictions are kept; the caller grows the ring and retries row i
                    count[k], head[k], shift[k], s1[k], since[k] = c, h, sh, a, n_since
                    return i
            if c == 0:
                sh = v
                a = 0.0
            pos = h + c
            if pos >= cap:
                pos -= cap
            vals[k, pos] = v
            if rows == 0:  # a row window's tss is a zero-wide stub
                tss[k, pos] = t
            a += v - sh
            c += 1
        n_since += 1
        if n_since >= max(c, RECENTRE_MIN):  # two-pass, re-centred on the window's mean
            total = 0.0
            j = h
            for _ in range(c):
                total += vals[k, j]
                j = j + 1 if j + 1 < cap else 0
            sh = total / c
            a = 0.0
            j = h
            for _ in range(c):
                a += vals[k, j] - sh
                j = j + 1 if j + 1 < cap else 0
            n_since = 0
        if c >= rows if rows > 0 else c >= min_periods:
            out[i] = sh + a / c
        else:
            out[i] = np.nan
    if k >= 0:
        count[k], head[k], shift[k], s1[k], since[k] = c, h, sh, a, n_since
    return n


class ZscoreParams(WindowParams):
    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the rolling mean and "
                                               "standard deviation")


@kernel("rolling_zscore", params=ZscoreParams, inputs=("price",), outputs=("zscore",),
        state=ring_moment_peak_state, args=_window_args, time_window=True,
        formula="(x_t - mean) / std over the window including x_t; NaN if std = 0")
@njit(nogil=True, cache=True)
def rolling_zscore(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, peak,
                   out, rows, span, min_periods):
    """Rolling z-score of the value against its window (sample std); NaN if std is 0.

    State: a ring of the window's values, shifted running sums and their peak.
    """
    n = key.shape[0]
    dev = np.empty(n)
    std = np.empty(n)
    done = rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                           peak, dev, std, rows, span, min_periods, 1, True, True)
    for i in range(done):
        s = std[i]
        if np.isnan(s) or s == 0.0:
            out[i] = np.nan
        else:
            out[i] = dev[i] / s
    return done
