"""Risk: Page's CUSUM change detector, historical VaR and CVaR over a window's sorted tail."""

from __future__ import annotations

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
    per_row = isinstance(p.window, int)  # one push per row; the sorted prefix holds fewer
    return [*ring_fields(cap, per_row=per_row, stub_ts=per_row),
            Field("sorted", (cap,), np.float64, np.nan, "linear", per_row=per_row),
            Field("tail_count", (), np.int64, 0), Field("tail_max", (), np.float64, np.nan)]


def _var_args(p: HistoricalVarParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return p.alpha, rows, span, p.min_periods


TAIL_SLACK = 8
"""Values kept in the sorted tail beyond the quantile's: a rebuild from the ring (O(window)) is
due only once evictions have taken them all, and the tail is cut back when it holds more than
twice as many."""


@njit(nogil=True, cache=True)
def tail_window_walk(key, ts, x, vals, tss, head, count, sbuf, tcount, tmax, out, alpha, rows,
                     span, min_periods, tail_mean):
    """Keep each key's window in a ring (arrival order) and its lowest values sorted; write
    -VaR or -CVaR at ``alpha`` once warm. Returns the row where a time-window ring is full,
    else n.

    The sorted tail ``sbuf[k, :tcount[k]]`` holds exactly the window's values <= ``tmax[k]``,
    ordered by value then arrival: the same values, in the same order, as the first
    ``tcount`` of the whole window sorted stably, so the quantile and the tail mean read the
    same numbers in the same order (the same bits) as from a fully sorted window. A value
    enters or leaves the tail only when it is <= ``tmax``: with alpha 0.05 and 100 rows, about
    one row in eight moves a dozen values instead of a third of the window. When evictions
    leave fewer values than the quantile reads, the tail is rebuilt from the ring with
    ``TAIL_SLACK`` to spare; ``tmax`` is +inf while the tail is the whole window, and NaN
    until the window is first warm (no value is <= NaN: no tail is kept before). The sorted
    steps are written out, not called: numba helpers taking arrays pay a reference-count
    pair per call even inlined (see kernels.window).
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
        m = tcount[k]
        th = tmax[k]
        while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):
            old = vals[k, h]
            if old <= th:  # it is in the tail: remove its first equal (the oldest of them)
                j = 0
                while sbuf[k, j] < old:
                    j += 1
                while j < m - 1:
                    sbuf[k, j] = sbuf[k, j + 1]
                    j += 1
                m -= 1
            h = h + 1 if h + 1 < cap else 0
            c -= 1
        if c == cap:  # nothing was evicted: the caller grows the ring and retries row i
            return i
        if v <= th:  # into the tail after its equals
            j = m
            while j > 0 and sbuf[k, j - 1] > v:
                sbuf[k, j] = sbuf[k, j - 1]
                j -= 1
            sbuf[k, j] = v
            m += 1
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
            tcount[k] = m
            out[i] = np.nan
            continue
        # numpy's linear quantile of the sorted window reads positions lo and hi
        qpos = alpha * (c - 1)
        lo = int(np.floor(qpos))
        hi = lo + 1 if lo + 1 < c else lo
        need = hi + 1
        if m > need + 2 * TAIL_SLACK:  # cut the tail back, keeping every equal of its last
            th = sbuf[k, need + TAIL_SLACK - 1]
            end = m
            m = need + TAIL_SLACK
            while m < end and sbuf[k, m] <= th:
                m += 1
        elif m < need:  # rebuild: the smallest ``keep`` values, by value then arrival
            keep = need + TAIL_SLACK
            if keep >= c:
                keep = c
            m = 0
            j = h
            for _ in range(c):
                w = vals[k, j]
                j = j + 1 if j + 1 < cap else 0
                if m < keep:
                    p = m
                    m += 1
                elif w < sbuf[k, keep - 1]:
                    p = keep - 1
                else:
                    continue
                while p > 0 and sbuf[k, p - 1] > w:
                    sbuf[k, p] = sbuf[k, p - 1]
                    p -= 1
                sbuf[k, p] = w
            th = np.inf if keep == c else sbuf[k, keep - 1]
            if keep < c:
                ties = 0  # values equal to th left out: take every value <= th instead
                j = h
                for _ in range(c):
                    if vals[k, j] <= th:
                        ties += 1
                    j = j + 1 if j + 1 < cap else 0
                if ties > keep:
                    m = 0
                    j = h
                    for _ in range(c):
                        w = vals[k, j]
                        j = j + 1 if j + 1 < cap else 0
                        if w <= th:
                            p = m
                            while p > 0 and sbuf[k, p - 1] > w:
                                sbuf[k, p] = sbuf[k, p - 1]
                                p -= 1
                            sbuf[k, p] = w
                            m += 1
        tcount[k] = m
        tmax[k] = th
        frac = qpos - lo
        qa = sbuf[k, lo]
        q = qa + (sbuf[k, hi] - qa) * frac
        if not tail_mean:
            out[i] = -q
            continue
        # values <= q are a prefix of the sorted tail, never empty since q >= its minimum
        total = 0.0
        j = 0
        while j < m and sbuf[k, j] <= q:
            total += sbuf[k, j]
            j += 1
        out[i] = -(total / j)
    return key.shape[0]


@kernel("historical_var", params=HistoricalVarParams, inputs=("log_return",), outputs=("var",),
        state=_sorted_window_state, args=_var_args, time_window=True,
        formula="-quantile_alpha of the window (a loss is positive)")
@njit(nogil=True, cache=True)
def historical_var(key, ts, r, vals, tss, head, count, sbuf, tcount, tmax, out, alpha, rows,
                   span, min_periods):
    """Historical value at risk: minus the alpha-quantile (linear interpolation) of the window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: a ring of the window's returns with timestamps (arrival order, for eviction) and
    its lowest values kept sorted (those <= ``tail_max``, ``tail_count`` of them: the quantile's
    and a few more), rebuilt from the ring when evictions leave too few.

    >>> # window of 1..5 with alpha 0.25 -> -2.0
    """
    return tail_window_walk(key, ts, r, vals, tss, head, count, sbuf, tcount, tmax, out, alpha,
                            rows, span, min_periods, False)


@kernel("historical_cvar", params=HistoricalVarParams, inputs=("log_return",),
        outputs=("cvar",), state=_sorted_window_state, args=_var_args, time_window=True,
        formula="-mean of the window's values <= quantile_alpha")
@njit(nogil=True, cache=True)
def historical_cvar(key, ts, r, vals, tss, head, count, sbuf, tcount, tmax, out, alpha, rows,
                    span, min_periods):
    """Historical conditional VaR (expected shortfall): minus the mean of the window's values
    at or below its alpha-quantile (linear interpolation).

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: as ``historical_var``: a ring in arrival order and its lowest values sorted; the
    tail mean is a prefix sum of them (about alpha * w values).

    >>> # window of 1..5 with alpha 0.25 -> quantile 2, values <= 2 are 1, 2 -> -1.5
    """
    return tail_window_walk(key, ts, r, vals, tss, head, count, sbuf, tcount, tmax, out, alpha,
                            rows, span, min_periods, True)
