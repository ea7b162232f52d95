"""Rolling extremes (family "statistics"): rolling min/max and the Donchian channel, over
monotonic deques (exact, O(1) amortised per row)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Field,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
)
from tickflow.kernels.stat_params import _window_args
from tickflow.kernels.window import deque_push

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
        hi = deque_push(av, aseq, ahead, acount, k, v, s, oldest)  # max of x
        lo = np.nan
        if both:  # min of x: max of -x
            lo = -deque_push(bv, bseq, bhead, bcount, k, -v, s, oldest)
        if c < rows if rows > 0 else c < min_periods:
            out_max[i] = np.nan
            out_min[i] = np.nan
        else:
            out_max[i] = hi
            out_min[i] = lo
    return key.shape[0]


class RollingMinMaxParams(WindowParams):
    window: Window = PydanticField(20, description="rows (or a duration) of the rolling extreme")


@kernel("rolling_min", family="statistics", params=RollingMinMaxParams, inputs=("price",),
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


@kernel("rolling_max", family="statistics", params=RollingMinMaxParams, inputs=("price",),
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


@kernel("donchian_channel", family="statistics", params=DonchianParams, inputs=("price",),
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
