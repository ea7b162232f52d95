"""Risk: Page's CUSUM change detector, historical VaR and CVaR over a sorted window."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from kernels.base import (
    Field,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
    window_args,
)
from kernels.window import (
    is_warm,
    ring_advance,
    ring_expired,
    ring_slot,
    sorted_insert,
    sorted_quantile,
    sorted_remove,
)


class CusumParams(Params):
    """cusum: drift allowance k >= 0, alarm threshold h > 0, target mean."""

    k: float = PydanticField(0.0005, ge=0.0)
    h: float = PydanticField(0.01, gt=0.0)
    target: float = 0.0


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

    alpha: float = PydanticField(0.05, gt=0.0, lt=1.0)
    window: Window = 100


def _sorted_window_state(p: HistoricalVarParams) -> list[Field]:
    cap = initial_capacity(p.window)
    return [*ring_fields(cap), Field("sorted", (cap,), np.float64, np.nan, "linear")]


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
        t = ts[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        while ring_expired(tss, head, count, k, t, rows, span):
            sorted_remove(sbuf, k, count[k], vals[k, head[k]])
            ring_advance(head, count, k, cap)
        if count[k] == cap:
            return i
        sorted_insert(sbuf, k, count[k], v)
        pos = ring_slot(head, count, k, cap)
        vals[k, pos] = v
        tss[k, pos] = t
        count[k] += 1
        if not is_warm(count, k, rows, min_periods):
            out[i] = np.nan
            continue
        n = count[k]
        q = sorted_quantile(sbuf, k, n, alpha)
        if not tail_mean:
            out[i] = -q
            continue
        # values <= q are a prefix of the sorted window, never empty since q >= its minimum
        total = 0.0
        m = 0
        while m < n and sbuf[k, m] <= q:
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
