"""Risk: Page's CUSUM change detector, historical VaR and CVaR over a sorted window."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Field,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
    window_args,
)


class CusumParams(Params):
    """cusum: drift allowance k >= 0, alarm threshold h > 0, target mean."""

    k: float = PydanticField(0.0005, ge=0.0,
                             description="allowance (drift) subtracted per step before "
                                         "accumulating")
    h: float = PydanticField(0.01, gt=0.0, description="alarm threshold of the cumulative sum")
    target: float = PydanticField(0.0, description="expected mean of the input")


@kernel("cusum", params=CusumParams, inputs=("log_return",),
        outputs=("cusum_stat", "cusum_alarm"), output_dtypes=(np.float64, np.int8),
        state=lambda p: [Field("s_pos", fill=0.0), Field("s_neg", fill=0.0)],
        args=lambda p: (p.k, p.h, p.target),
        formula="two-sided Page CUSUM; alarm when max(S+, S-) > h, then both sums reset")
@njit(nogil=True, cache=True)
def cusum(key, ts, x, s_pos, s_neg, out_stat, out_alarm, k_drift, h, target):
    """Two-sided Page (1954) CUSUM with reset after an alarm.

    S+ = max(0, S+ + x - target - k); S- = max(0, S- - x + target - k);
    cusum_stat = max(S+, S-) after the update; cusum_alarm = 1 when cusum_stat > h, and then
    both sums reset to 0 (the row's stat is the value that crossed h). Output from the first
    row. A NaN input outputs stat NaN, alarm 0, and leaves the sums unchanged.

    State: ``s_pos`` and ``s_neg`` per key, starting at 0.

    >>> # x = 0.006, 0.006 with k 0, h 0.01 -> stat 0.006, 0.012; alarm 0, 1
    """
    for i in range(key.shape[0]):
        kid = key[i]
        v = x[i]
        if np.isnan(v):
            out_stat[i] = np.nan
            out_alarm[i] = 0
            continue
        sp = s_pos[kid] + v - target - k_drift
        sn = s_neg[kid] - v + target - k_drift
        sp = sp if sp > 0.0 else 0.0
        sn = sn if sn > 0.0 else 0.0
        stat = sp if sp > sn else sn
        out_stat[i] = stat
        if stat > h:
            out_alarm[i] = 1
            sp = 0.0
            sn = 0.0
        else:
            out_alarm[i] = 0
        s_pos[kid] = sp
        s_neg[kid] = sn
    return key.shape[0]


class HistoricalVarParams(WindowParams):
    """historical_var / historical_cvar: tail probability 0 < alpha < 1 and a (T) window."""

    alpha: float = PydanticField(0.05, gt=0.0, lt=1.0,
                                 description="tail probability (0.05: the worst 5%)")
    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the empirical distribution")


def _sorted_window_state(p: HistoricalVarParams) -> list[Field]:
    cap = initial_capacity(p.window)
    per_row = isinstance(p.window, int)  # one push per row; the sorted copy holds the same
    return [*ring_fields(cap, per_row=per_row, stub_ts=per_row),
            Field("sorted", (cap,), np.float64, np.nan, "linear", per_row=per_row)]


def _var_args(p: HistoricalVarParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return p.alpha, rows, span, p.min_periods


@njit(nogil=True, cache=True)
def sorted_window_walk(key, ts, x, vals, tss, head, count, sbuf, out, alpha, rows, span,
                       min_periods, tail_mean):
    """Keep each key's window in a ring (arrival order) and a sorted buffer; write -VaR or
    -CVaR at ``alpha`` once warm. Returns the row where a time-window ring is full, else n.
    """
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        t = ts[i]
        c = count[k]
        h = head[k]
        # The last eviction is kept pending so that it and the insert share one shift. The
        # sorted-buffer steps (branchless binary searches, shifts) are written out here:
        # numba helpers that take an array pay a reference-count increment and decrement per
        # call, even inlined (see kernels.window.sorted_lower for the search).
        pending = False
        old = 0.0
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            if pending:  # a second eviction (time windows): remove the previous one now
                n = c + 1
                j = 0  # first index of the sorted prefix [0, n) with value >= old
                m = n
                while m > 1:
                    half = m >> 1
                    j = j + half if sbuf[k, j + half] < old else j
                    m -= half
                if m == 1 and sbuf[k, j] < old:
                    j += 1
                while j < n - 1:
                    sbuf[k, j] = sbuf[k, j + 1]
                    j += 1
            old = vals[k, h]
            pending = True
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # nothing was evicted: the caller grows the ring and retries row i
            return i
        if pending and old == v and v != 0.0:
            pass  # same bits: removing old and inserting v leaves the sorted buffer as it is
        elif pending:  # remove ``old`` and insert ``v`` moving only the values in between
            n = c + 1
            ro = 0  # first index of the sorted prefix [0, n) with value >= old
            m = n
            while m > 1:
                half = m >> 1
                ro = ro + half if sbuf[k, ro + half] < old else ro
                m -= half
            if m == 1 and sbuf[k, ro] < old:
                ro += 1
            u = 0  # first index of the sorted prefix [0, n) with value > v
            m = n
            while m > 1:
                half = m >> 1
                u = u + half if sbuf[k, u + half] <= v else u
                m -= half
            if m == 1 and sbuf[k, u] <= v:
                u += 1
            same = False
            if old == v:  # zeros: a no-op too when v and the run of zeros share one sign
                neg = 0
                for j in range(ro, u):
                    neg += math.copysign(1.0, sbuf[k, j]) < 0.0
                same = neg == (u - ro if math.copysign(1.0, v) < 0.0 else 0)
            if not same:
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
                sbuf[k, ins] = v
        else:
            ins = 0  # first index of the sorted prefix [0, c) with value > v
            m = c
            while m > 1:
                half = m >> 1
                ins = ins + half if sbuf[k, ins + half] <= v else ins
                m -= half
            if m == 1 and sbuf[k, ins] <= v:
                ins += 1
            j = c
            while j > ins:
                sbuf[k, j] = sbuf[k, j - 1]
                j -= 1
            sbuf[k, ins] = v
        pos = h + c
        if pos >= cap:
            pos -= cap
        vals[k, pos] = v
        if rows == 0:  # a row window's tss is a zero-wide stub
            tss[k, pos] = t
        c += 1
        count[k] = c
        head[k] = h
        if c < rows if rows > 0 else c < min_periods:
            out[i] = np.nan
            continue
        # numpy's linear quantile of the sorted window (as sorted_quantile)
        qpos = alpha * (c - 1)
        lo = int(np.floor(qpos))
        hi = lo + 1 if lo + 1 < c else lo
        frac = qpos - lo
        qa = sbuf[k, lo]
        q = qa + (sbuf[k, hi] - qa) * frac
        if not tail_mean:
            out[i] = -q
            continue
        # values <= q are a prefix of the sorted window, never empty since q >= its minimum
        total = 0.0
        m = 0
        while m < c and sbuf[k, m] <= q:
            total += sbuf[k, m]
            m += 1
        out[i] = -(total / m)
    return key.shape[0]


@kernel("historical_var", params=HistoricalVarParams, inputs=("log_return",), outputs=("var",),
        state=_sorted_window_state, args=_var_args, time_window=True,
        formula="-quantile_alpha of the window (a loss is positive)")
@njit(nogil=True, cache=True)
def historical_var(key, ts, r, vals, tss, head, count, sbuf, out, alpha, rows, span,
                   min_periods):
    """Historical value at risk: minus the alpha-quantile (linear interpolation) of the window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: a ring of the window's returns with timestamps (arrival order, for eviction) and
    the same values kept sorted (binary-search insert and remove, O(w) memmove per row).

    >>> # window of 1..5 with alpha 0.25 -> -2.0
    """
    return sorted_window_walk(key, ts, r, vals, tss, head, count, sbuf, out, alpha, rows, span,
                              min_periods, False)


@kernel("historical_cvar", params=HistoricalVarParams, inputs=("log_return",),
        outputs=("cvar",), state=_sorted_window_state, args=_var_args, time_window=True,
        formula="-mean of the window's values <= quantile_alpha")
@njit(nogil=True, cache=True)
def historical_cvar(key, ts, r, vals, tss, head, count, sbuf, out, alpha, rows, span,
                    min_periods):
    """Historical conditional VaR (expected shortfall): minus the mean of the window's values
    at or below its alpha-quantile (linear interpolation).

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: as ``historical_var``: a ring in arrival order and a sorted copy; the tail mean is
    a prefix sum of the sorted copy (about alpha * w values).

    >>> # window of 1..5 with alpha 0.25 -> quantile 2, values <= 2 are 1, 2 -> -1.5
    """
    return sorted_window_walk(key, ts, r, vals, tss, head, count, sbuf, out, alpha, rows, span,
                              min_periods, True)
