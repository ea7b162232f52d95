"""Rolling statistics: min/max, skew, kurtosis, correlation, beta, EW covariance, MedRV,
Donchian channel, stochastic oscillator, 1-D Kalman filter, Cornish-Fisher VaR, MAD outlier
flag and drawdown."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Field,
    Params,
    Window,
    WindowParams,
    kernel,
    ring_fields,
    window_args,
)

# the family's kernels in other modules register first, in their original order (importing
# them here); their names stay importable from this module
from tickflow.kernels.extremes import (
    _deque_fields,
    _sorted_state,
    donchian_channel,
    rolling_max,
    rolling_min,
)
from tickflow.kernels.higher_moments import cornish_fisher_var, rolling_kurt, rolling_skew
from tickflow.kernels.medrv import medrv
from tickflow.kernels.pair_windows import (
    ewcov,
    pair_state,
    pair_walk,
    rolling_beta,
    rolling_corr,
)
from tickflow.kernels.stat_params import PosInt, min_row_window
from tickflow.kernels.window import deque_push, ring_advance, ring_at, ring_slot

__all__ = ["PosInt", "cornish_fisher_var", "donchian_channel", "drawdown", "ewcov",
           "kalman_1d", "medrv", "min_row_window", "outlier_flag_mad", "pair_state", "pair_walk",
           "rolling_beta", "rolling_corr", "rolling_kurt", "rolling_max", "rolling_min",
           "rolling_skew", "stochastic_osc"]


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
        mx = deque_push(hv, hseq, hhead, hcount, kk, h, s, oldest)  # max of the highs
        mn = -deque_push(lv, lseq, lhead, lcount, kk, -lo, s, oldest)  # min of the lows
        if s + 1 < k_rows:
            out_k[i] = np.nan
            out_d[i] = np.nan
            continue
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
