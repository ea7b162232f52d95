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

from tickflow.kernels.base import (
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
from tickflow.kernels.window import (
    PEAK_RATIO,
    RECENTRE_MIN,
    RECOMPUTE,
    is_warm,
    ring_advance,
    ring_at,
    ring_expired,
    ring_slot,
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


def _deque_fields(group: str, cap: int) -> list[Field]:
    """A monotonic deque kept as a ring: values, their row sequence numbers, head, count."""
    return [Field(group, (cap,), np.float64, np.nan, "ring", group),
            Field(f"{group}_seq", (cap,), np.int64, 0, "ring", group),
            Field(f"{group}_head", (), np.int64, 0), Field(f"{group}_count", (), np.int64, 0)]


def _extremes_state(*groups: str) -> Callable[[WindowParams], list[Field]]:
    def state(p: WindowParams) -> list[Field]:
        cap = initial_capacity(p.window)
        fields = [*ring_fields(cap, values=()), Field("seq", (), np.int64, 0)]
        for g in groups:
            fields += _deque_fields(g, cap)
        return fields
    return state


@njit(nogil=True, cache=True)
def deque_extremes(key, ts, x, tss, head, count, seq, av, aseq, ahead, acount, bv, bseq, bhead,
                   bcount, out_max, out_min, rows, span, min_periods, both):
    """Write the window's max (deque a, of x) and, when ``both``, its min (deque b, of -x)
    once warm; NaN before and on NaN inputs. Returns the row where a time-window ring is
    full, else n.

    The ring holds the window's timestamps (for its count and time evictions) and ``seq``
    counts a key's valid rows. Each deque keeps, oldest first, the values no later value
    is >= to, with their row numbers: its front is the window's max. A row pops the deque's
    expired front and the back values it dominates, then appends: O(1) amortised per row.
    """
    cap = tss.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out_max[i] = np.nan
            out_min[i] = np.nan
            continue
        t = ts[i]
        c = count[k]
        h = head[k]
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # the caller grows the buffers and retries row i
            count[k] = c
            head[k] = h
            return i
        pos = h + c
        if pos >= cap:
            pos -= cap
        tss[k, pos] = t
        s = seq[k]
        oldest = s - c  # row number of the window's oldest row once this one is in
        c += 1
        count[k] = c
        head[k] = h
        seq[k] = s + 1
        # deque a: max of x
        qh = ahead[k]
        qc = acount[k]
        while qc > 0 and aseq[k, qh] < oldest:
            qh = qh + 1 if qh + 1 < cap else 0
            qc -= 1
        while qc > 0:
            back = qh + qc - 1
            if back >= cap:
                back -= cap
            if av[k, back] > v:
                break
            qc -= 1
        pos = qh + qc
        if pos >= cap:
            pos -= cap
        av[k, pos] = v
        aseq[k, pos] = s
        ahead[k] = qh
        acount[k] = qc + 1
        hi = av[k, qh]
        lo = np.nan
        if both:  # deque b: max of -x
            w = -v
            qh = bhead[k]
            qc = bcount[k]
            while qc > 0 and bseq[k, qh] < oldest:
                qh = qh + 1 if qh + 1 < cap else 0
                qc -= 1
            while qc > 0:
                back = qh + qc - 1
                if back >= cap:
                    back -= cap
                if bv[k, back] > w:
                    break
                qc -= 1
            pos = qh + qc
            if pos >= cap:
                pos -= cap
            bv[k, pos] = w
            bseq[k, pos] = s
            bhead[k] = qh
            bcount[k] = qc + 1
            lo = -bv[k, qh]
        if c < rows if rows > 0 else c < min_periods:
            out_max[i] = np.nan
            out_min[i] = np.nan
        else:
            out_max[i] = hi
            out_min[i] = lo
    return key.shape[0]


class RollingMinMaxParams(WindowParams):
    window: Window = PydanticField(20, description="rows (or a duration) of the rolling extreme")


@kernel("rolling_min", params=RollingMinMaxParams, inputs=("price",),
        outputs=("{input}_min{window}",), state=_extremes_state("qmin"), args=_window_args,
        time_window=True, formula="min over the window")
@njit(nogil=True, cache=True)
def rolling_min(key, ts, x, tss, head, count, seq, qv, qseq, qhead, qcount, out, rows, span,
                min_periods):
    """Rolling minimum over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's timestamps, the key's row count ``seq``, and a monotonic
    deque ``qmin`` of negated values with their row numbers (front = -min), O(1) amortised.

    >>> # x = 3, 1, 2 with window 2 -> NaN, 1.0, 1.0
    """
    neg = -x
    scratch = np.empty(key.shape[0])
    done = deque_extremes(key, ts, neg, tss, head, count, seq, qv, qseq, qhead, qcount, qv,
                          qseq, qhead, qcount, scratch, out, rows, span, min_periods, False)
    for i in range(done):
        out[i] = -scratch[i]
    return done


@kernel("rolling_max", params=RollingMinMaxParams, inputs=("price",),
        outputs=("{input}_max{window}",), state=_extremes_state("qmax"), args=_window_args,
        time_window=True, formula="max over the window")
@njit(nogil=True, cache=True)
def rolling_max(key, ts, x, tss, head, count, seq, qv, qseq, qhead, qcount, out, rows, span,
                min_periods):
    """Rolling maximum over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN and leaves the window unchanged.

    State: a ring of the window's timestamps, the key's row count ``seq``, and a monotonic
    deque ``qmax`` of values with their row numbers (front = max), O(1) amortised.

    >>> # x = 3, 1, 2 with window 2 -> NaN, 3.0, 2.0
    """
    scratch = np.empty(key.shape[0])
    return deque_extremes(key, ts, x, tss, head, count, seq, qv, qseq, qhead, qcount, qv, qseq,
                          qhead, qcount, out, scratch, rows, span, min_periods, False)


class DonchianParams(WindowParams):
    window: Window = PydanticField(20,
                                   description="rows (or a duration) of the channel's high and low")


@kernel("donchian_channel", params=DonchianParams, inputs=("price",),
        outputs=("dc_high", "dc_low", "dc_mid"), state=_extremes_state("qmax", "qmin"),
        args=_window_args, time_window=True, formula="rolling max, min and their mean")
@njit(nogil=True, cache=True)
def donchian_channel(key, ts, x, tss, head, count, seq, av, aseq, ahead, acount, bv, bseq,
                     bhead, bcount, out_high, out_low, out_mid, rows, span, min_periods):
    """Donchian channel: dc_high = max, dc_low = min over the window, dc_mid = (high + low) / 2.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time). A NaN input outputs NaN in all three and leaves the window unchanged.

    State: a ring of the window's timestamps, the key's row count ``seq``, and two monotonic
    deques with row numbers: ``qmax`` of the values, ``qmin`` of the negated values.

    >>> # x = 1, 3 with window 2 -> NaN, then high 3, low 1, mid 2
    """
    done = deque_extremes(key, ts, x, tss, head, count, seq, av, aseq, ahead, acount, bv, bseq,
                          bhead, bcount, out_high, out_low, rows, span, min_periods, True)
    for i in range(done):
        out_mid[i] = (out_high[i] + out_low[i]) * 0.5
    return done


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


@kernel("rolling_skew", params=RollingSkewParams, inputs=("log_return",),
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


@kernel("rolling_kurt", params=RollingKurtParams, inputs=("log_return",),
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


@kernel("cornish_fisher_var", params=CornishFisherParams, inputs=("log_return",),
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

    window: Window = PydanticField(20,
                                   description="rows (or a duration) of the median realized "
                                               "variance")

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

    k: PosInt = PydanticField(14, description="rows of the %K high-low range")
    d: PosInt = PydanticField(3, description="rows of the %D moving average of %K")


def _stoch_state(p: StochasticParams) -> list[Field]:
    return [Field("seq", (), np.int64, 0), *_deque_fields("qhigh", p.k),
            *_deque_fields("qlow", p.k),
            *ring_fields(p.d, values=("kvals",), group="d", with_ts=False)]


@kernel("stochastic_osc", params=StochasticParams, inputs=("high", "low", "close"),
        outputs=("stoch_k", "stoch_d"), state=_stoch_state, args=lambda p: (p.k, p.d),
        formula="%K = 100 (close - min low) / (max high - min low) over k rows; %D = SMA_d(%K)")
@njit(nogil=True, cache=True)
def stochastic_osc(key, ts, high, low, close, seq, hv, hseq, hhead, hcount, lv, lseq, lhead,
                   lcount, kvals, d_head, d_count, out_k, out_d, k_rows, d_rows):
    """Fast stochastic oscillator (Lane): %K = 100 (close - min low) / (max high - min low)
    over the last k rows, %D = the simple mean of the last d values of %K.

    Warm-up: %K from the key's k-th valid row, %D from its (k + d - 1)-th. %K is NaN when
    max high = min low (zero range), and a %D window holding such a NaN is NaN. A row with any
    input NaN outputs NaN in both and changes nothing. (TA-Lib's STOCHF gives 0 on a zero
    range.)

    State: the key's valid-row count ``seq``; monotonic deques (values with row numbers, as
    ``rolling_max``) of the highs (``qhigh``, front = max) and of the negated lows (``qlow``,
    front = -min), O(1) amortised; a ring of the last d %K.

    >>> # k 2, d 1: (h, l, c) = (10, 8, 9), (12, 9, 11) -> NaN, 100 * (11 - 8) / (12 - 8) = 75
    """
    cap = hv.shape[1]
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
        s = seq[kk]
        seq[kk] = s + 1
        oldest = s - k_rows + 1  # row number of the oldest row of the window once s is in
        for side in range(2):  # 0: max of the highs, 1: max of the negated lows
            qv = hv if side == 0 else lv
            qs = hseq if side == 0 else lseq
            qhead = hhead if side == 0 else lhead
            qcount = hcount if side == 0 else lcount
            v = h if side == 0 else -lo
            qh = qhead[kk]
            qc = qcount[kk]
            while qc > 0 and qs[kk, qh] < oldest:
                qh = qh + 1 if qh + 1 < cap else 0
                qc -= 1
            while qc > 0:
                back = qh + qc - 1
                if back >= cap:
                    back -= cap
                if qv[kk, back] > v:
                    break
                qc -= 1
            pos = qh + qc
            if pos >= cap:
                pos -= cap
            qv[kk, pos] = v
            qs[kk, pos] = s
            qhead[kk] = qh
            qcount[kk] = qc + 1
        if s + 1 < k_rows:
            out_k[i] = np.nan
            out_d[i] = np.nan
            continue
        mn = -lv[kk, lhead[kk]]
        mx = hv[kk, hhead[kk]]
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

    q: float = PydanticField(1e-5, ge=0.0,
                             description="process noise variance (how fast the level moves)")
    r: float = PydanticField(1e-2, gt=0.0, description="measurement noise variance")


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

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the rolling median and MAD")
    k: float = PydanticField(5.0, gt=0.0, description="flag when |x - median| > k * MAD")


def _outlier_args(p: OutlierMadParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return p.k * 1.4826, rows, span, p.min_periods


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
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        out[i] = 0
        if np.isnan(v):
            continue
        t = ts[i]
        c = count[k]
        h = head[k]
        # The sorted-buffer steps are written out (no helper taking arrays per row, see
        # kernels.window); the last eviction stays pending so that it and the insert share
        # one shift of the values between them.
        pending = False
        old = 0.0
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            if pending:  # a second eviction (time windows): remove the previous one now
                j = 0
                while sbuf[k, j] < old:
                    j += 1
                while j < c:
                    sbuf[k, j] = sbuf[k, j + 1]
                    j += 1
            old = vals[k, h]
            pending = True
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # nothing was evicted: the caller grows the ring and retries row i
            return i
        n = c + 1 if pending else c  # values in the sorted buffer
        u = 0  # first index of the sorted prefix [0, n) with value > v
        m = n
        while m > 1:
            half = m >> 1
            u = u + half if sbuf[k, u + half] <= v else u
            m -= half
        if m == 1 and sbuf[k, u] <= v:
            u += 1
        if pending:  # remove ``old`` and insert ``v``, moving only the values in between
            ro = 0  # first index with value >= old
            m = n
            while m > 1:
                half = m >> 1
                ro = ro + half if sbuf[k, ro + half] < old else ro
                m -= half
            if m == 1 and sbuf[k, ro] < old:
                ro += 1
            if u > ro:
                ins = u - 1
                j = ro
                while j < ins:
                    sbuf[k, j] = sbuf[k, j + 1]
                    j += 1
            else:
                ins = u
                j = ro
                while j > ins:
                    sbuf[k, j] = sbuf[k, j - 1]
                    j -= 1
        else:
            ins = u
            j = c
            while j > ins:
                sbuf[k, j] = sbuf[k, j - 1]
                j -= 1
        sbuf[k, ins] = v
        pos = h + c
        if pos >= cap:
            pos -= cap
        vals[k, pos] = v
        tss[k, pos] = t
        c += 1
        count[k] = c
        head[k] = h
        if c < rows if rows > 0 else c < min_periods:
            continue
        # numpy's linear median of the sorted window
        qpos = 0.5 * (c - 1)
        lo = int(np.floor(qpos))
        hi = lo + 1 if lo + 1 < c else lo
        qa = sbuf[k, lo]
        med = qa + (sbuf[k, hi] - qa) * (qpos - lo)
        # MAD: the deviations below the median, med - s[sp - 1 - i], and above it,
        # s[sp + i] - med, are two increasing sequences; their merged ranks (c - 1) // 2 and
        # c // 2 are found by binary search on how many come from the lower one: O(log w).
        sp = 0  # first index with value >= med
        m = c
        while m > 1:
            half = m >> 1
            sp = sp + half if sbuf[k, sp + half] < med else sp
            m -= half
        if m == 1 and sbuf[k, sp] < med:
            sp += 1
        na = sp
        nb = c - sp
        mad = 0.0
        for rank in ((c - 1) // 2, c // 2):
            lo = rank + 1 - nb if rank + 1 > nb else 0
            hi = rank + 1 if rank + 1 < na else na
            while lo < hi:  # take ``lo`` from below: the first with dev_a[lo] >= dev_b[rank-lo]
                mid = (lo + hi) >> 1
                if med - sbuf[k, sp - 1 - mid] < sbuf[k, sp + rank - mid] - med:
                    lo = mid + 1
                else:
                    hi = mid
            dev = -1.0
            if lo > 0:
                dev = med - sbuf[k, sp - lo]
            if rank - lo >= 0:
                d2 = sbuf[k, sp + rank - lo] - med
                if d2 > dev:
                    dev = d2
            mad += dev
        mad *= 0.5
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
