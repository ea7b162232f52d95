"""Rolling skewness, kurtosis and Cornish-Fisher VaR (family "statistics"), from re-centred
fourth-order power sums."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import (
    Field,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from tickflow.kernels.stat_params import _window_args, min_row_window
from tickflow.kernels.window import (
    PEAK_RATIO,
    RECENTRE_MIN,
)

# --------------------------------------------------------------------------- higher moments


def _moment4_state(p: WindowParams) -> list[Field]:
    return (ring_fields(initial_capacity(p.window)) + moment_fields()
            + [Field("m_s3", (), np.float64, 0.0), Field("m_s4", (), np.float64, 0.0),
               Field("m_peak2", (), np.float64, 0.0), Field("m_peak4", (), np.float64, 0.0)])


@njit(inline="always", nogil=True)
def _recentred4(vals, k, h, c):
    """(centre, sums of d, d^2, d^3, d^4 with d = x - centre) over the ring, two-pass."""
    cap = vals.shape[1]
    total = 0.0
    j = h
    for _ in range(c):
        total += vals[k, j]
        j = j + 1 if j + 1 < cap else 0
    centre = total / c
    a1 = a2 = a3 = a4 = 0.0
    j = h
    for _ in range(c):
        d = vals[k, j] - centre
        d2 = d * d
        a1 += d
        a2 += d2
        a3 += d2 * d
        a4 += d2 * d2
        j = j + 1 if j + 1 < cap else 0
    return centre, a1, a2, a3, a4


@njit(inline="always", nogil=True)
def _central4(a1, a2, a3, a4, fn):
    """Population central moments (mean offset, m2, m3, m4) from shifted power sums."""
    a = a1 / fn
    b2 = a2 / fn
    b3 = a3 / fn
    m2 = b2 - a * a
    m3 = b3 - 3.0 * a * b2 + 2.0 * a * a * a
    m4 = a4 / fn - 4.0 * a * b3 + 6.0 * a * a * b2 - 3.0 * a * a * a * a
    return a, m2, m3, m4


@njit(nogil=True, cache=True)
def moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 peak2, peak4, out_mean, out_std, out_skew, out_kurt, rows, span, min_periods):
    """Keep each key's window with shifted power sums up to the 4th and write, once warm,
    the mean, sample std, pandas' adjusted skew (n >= 3) and bias-corrected excess kurtosis
    (n >= 4). Skew and kurtosis are NaN when the window is constant. Returns the row where a
    time-window ring is full, else n.

    Precision: add/remove rounding is relative to the largest sums since the last two-pass
    recompute (``peak2``, ``peak4``); when either exceeds PEAK_RATIO times the window's
    centred sum (a large value left a window of small ones, or the shift fell behind a drift)
    the sums are recomputed from the ring before the row's output.
    """
    cap = vals.shape[1]
    n_rows = key.shape[0]
    # a key's state stays in locals while consecutive rows share the key (see
    # averages.rolling_moments): written back when the key changes and before a return
    k = -1
    h = c = nsince = r = 0
    sh = a1 = a2 = a3 = a4 = lst = p2 = p4 = 0.0
    for i in range(n_rows):
        v = x[i]
        out_mean[i] = np.nan
        out_std[i] = np.nan
        out_skew[i] = np.nan
        out_kurt[i] = np.nan
        if np.isnan(v):
            continue
        if key[i] != k:
            if k >= 0:
                head[k], count[k], shift[k], s1[k], s2[k], s3[k], s4[k] = h, c, sh, a1, a2, a3, a4
                since[k], last[k], run[k], peak2[k], peak4[k] = nsince, lst, r, p2, p4
            k = key[i]
            h, c, sh, a1, a2, a3, a4 = head[k], count[k], shift[k], s1[k], s2[k], s3[k], s4[k]
            nsince, lst, r, p2, p4 = since[k], last[k], run[k], peak2[k], peak4[k]
        t = ts[i]
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            d = vals[k, h] - sh
            d2 = d * d
            a1 -= d
            a2 -= d2
            a3 -= d2 * d
            a4 -= d2 * d2
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # evictions are kept; the caller grows the ring and retries row i
            head[k], count[k], shift[k], s1[k], s2[k], s3[k], s4[k] = h, c, sh, a1, a2, a3, a4
            since[k], last[k], run[k], peak2[k], peak4[k] = nsince, lst, r, p2, p4
            return i
        pos = h + c
        if pos >= cap:
            pos -= cap
        vals[k, pos] = v
        tss[k, pos] = t
        if c == 0:
            sh = v
            a1 = a2 = a3 = a4 = p2 = p4 = 0.0
        d = v - sh
        d2 = d * d
        a1 += d
        a2 += d2
        a3 += d2 * d
        a4 += d2 * d2
        if a2 > p2:
            p2 = a2
        if a4 > p4:
            p4 = a4
        nsince += 1
        if v == lst:
            r += 1
        else:
            r = 1
            lst = v
        c += 1
        if nsince >= max(c, RECENTRE_MIN):  # exact two-pass sums, re-centred on the mean
            sh, a1, a2, a3, a4 = _recentred4(vals, k, h, c)
            p2 = a2
            p4 = a4
            nsince = 0
        if c < rows if rows > 0 else c < min_periods:
            continue
        n = c
        fn = float(n)
        if n < 2:
            out_mean[i] = sh + a1 / fn
            continue
        if r >= n:
            out_mean[i] = sh + a1 / fn
            out_std[i] = 0.0
            continue
        a, m2, m3, m4 = _central4(a1, a2, a3, a4, fn)
        if p2 > PEAK_RATIO * m2 * fn or p4 > PEAK_RATIO * m4 * fn:
            sh, a1, a2, a3, a4 = _recentred4(vals, k, h, c)
            p2 = a2
            p4 = a4
            nsince = 0
            a, m2, m3, m4 = _central4(a1, a2, a3, a4, fn)
        out_mean[i] = sh + a
        if m2 <= 0.0:
            out_std[i] = 0.0
            continue
        out_std[i] = np.sqrt(m2 * fn / (fn - 1.0))
        if n < 3:
            continue
        out_skew[i] = np.sqrt(fn * (fn - 1.0)) * m3 / ((fn - 2.0) * m2 * np.sqrt(m2))
        if n < 4:
            continue
        out_kurt[i] = (((fn * fn - 1.0) * m4 / (m2 * m2) - 3.0 * (fn - 1.0) * (fn - 1.0))
                       / ((fn - 2.0) * (fn - 3.0)))
    if k >= 0:
        head[k], count[k], shift[k], s1[k], s2[k], s3[k], s4[k] = h, c, sh, a1, a2, a3, a4
        since[k], last[k], run[k], peak2[k], peak4[k] = nsince, lst, r, p2, p4
    return n_rows


class RollingSkewParams(WindowParams):
    """rolling_skew: a (T) window; row windows need >= 3 values."""

    window: Window = PydanticField(100, description="rows (or a duration) of the rolling skewness")

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingSkewParams:
        min_row_window(self, 3)
        return self


class RollingKurtParams(WindowParams):
    """rolling_kurt: a (T) window; row windows need >= 4 values."""

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the rolling excess "
                                               "kurtosis")

    @model_validator(mode="after")
    def _enough_rows(self) -> RollingKurtParams:
        min_row_window(self, 4)
        return self


@kernel("rolling_skew", family="statistics", params=RollingSkewParams, inputs=("log_return",),
        outputs=("{input}_skew{window}",), state=_moment4_state, args=_window_args,
        time_window=True, formula="adjusted Fisher-Pearson skewness, as pandas rolling().skew()")
@njit(nogil=True, cache=True)
def rolling_skew(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 peak2, peak4, out, rows, span, min_periods):
    """Rolling skewness as pandas ``rolling().skew()``: with population central moments
    m2, m3 of the n values, sqrt(n (n - 1)) / (n - 2) * m3 / m2^1.5.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time), and always while it holds fewer than 3. NaN when the window is constant.
    A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's values, shifted power sums (orders 1-4) and their peaks
    since the last two-pass recompute, which comes every max(count, 32) pushes and whenever
    a sum's peak exceeds PEAK_RATIO times its centred value (see ``moment4_walk``).

    >>> # x = 1, 2, 4 with window 3 -> NaN, NaN, 0.9352...
    """
    n = key.shape[0]
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    return moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                        s3, s4, peak2, peak4, a, b, out, c, rows, span, min_periods)


@kernel("rolling_kurt", family="statistics", params=RollingKurtParams, inputs=("log_return",),
        outputs=("{input}_kurt{window}",), state=_moment4_state, args=_window_args,
        time_window=True, formula="bias-corrected excess kurtosis, as pandas rolling().kurt()")
@njit(nogil=True, cache=True)
def rolling_kurt(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, s3, s4,
                 peak2, peak4, out, rows, span, min_periods):
    """Rolling excess kurtosis as pandas ``rolling().kurt()``: with population central moments
    m2, m4 of the n values, ((n^2 - 1) m4 / m2^2 - 3 (n - 1)^2) / ((n - 2) (n - 3)).

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time), and always while it holds fewer than 4. NaN when the window is constant.
    A NaN input outputs NaN and leaves the window unchanged.

    State: as ``rolling_skew``.

    >>> # x = 1, 2, 3, 10 with window 4 -> NaN x3, 3.228
    """
    n = key.shape[0]
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    return moment4_walk(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                        s3, s4, peak2, peak4, a, b, c, out, rows, span, min_periods)


class CornishFisherParams(WindowParams):
    """cornish_fisher_var: tail probability 0 < alpha < 1; row windows need >= 4 values."""

    alpha: float = PydanticField(0.05, gt=0.0, lt=1.0,
                                 description="tail probability (0.05: the worst 5%)")
    window: Window = PydanticField(100, description="rows (or a duration) of the moments")

    @model_validator(mode="after")
    def _enough_rows(self) -> CornishFisherParams:
        min_row_window(self, 4)
        return self


def _cf_args(p: CornishFisherParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return NormalDist().inv_cdf(p.alpha), rows, span, p.min_periods


@kernel("cornish_fisher_var", family="statistics",
        params=CornishFisherParams, inputs=("log_return",),
        outputs=("cf_var",), state=_moment4_state, args=_cf_args, time_window=True,
        formula="-(mean + z_cf std), z_cf the Cornish-Fisher quantile from rolling skew/kurt")
@njit(nogil=True, cache=True)
def cornish_fisher_var(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                       s3, s4, peak2, peak4, out, z, rows, span, min_periods):
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
                        s3, s4, peak2, peak4, mean, std, skew, kurt, rows, span,
                        min_periods)
    z2 = z * z
    z3 = z2 * z
    for i in range(done):
        s = skew[i]
        kk = kurt[i]
        zcf = (z + (z2 - 1.0) * s / 6.0 + (z3 - 3.0 * z) * kk / 24.0
               - (2.0 * z3 - 5.0 * z) * s * s / 36.0)
        out[i] = -(mean[i] + zcf * std[i])  # NaN whenever S or K is
    return done
