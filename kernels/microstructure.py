"""Level-1 microstructure: midprice, microprice, quoted spread, L1 imbalance and order flow
imbalance (OFI)."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Field,
    NoParams,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
    window_args,
)
from tickflow.kernels.window import RECOMPUTE

# --------------------------------------------------------------------------- stateless quotes


@kernel("midprice", params=NoParams, inputs=("best_bid", "best_ask"), outputs=("midprice",),
        formula="(bid + ask) / 2")
@njit(nogil=True, cache=True)
def midprice(key, ts, bid, ask, out):
    """Midprice: (bid + ask) / 2.

    Warm-up: none. NaN policy: NaN when either input is NaN. State: none.

    >>> # bid 99, ask 101 -> 100.0
    """
    for i in range(key.shape[0]):
        out[i] = (bid[i] + ask[i]) * 0.5
    return key.shape[0]


@kernel("microprice", params=NoParams,
        inputs=("best_bid", "best_ask", "best_bid_size", "best_ask_size"),
        outputs=("microprice",),
        formula="(bid * ask_size + ask * bid_size) / (bid_size + ask_size)")
@njit(nogil=True, cache=True)
def microprice(key, ts, bid, ask, bid_size, ask_size, out):
    """Size-weighted microprice: (bid * ask_size + ask * bid_size) / (bid_size + ask_size).

    Warm-up: none. NaN policy: NaN when any input is NaN or when bid_size + ask_size = 0.
    State: none.

    >>> # bid 99 x 3, ask 101 x 1 -> (99 * 1 + 101 * 3) / 4 = 100.5
    """
    for i in range(key.shape[0]):
        total = bid_size[i] + ask_size[i]
        if total == 0.0 or np.isnan(total):
            out[i] = np.nan
        else:
            out[i] = (bid[i] * ask_size[i] + ask[i] * bid_size[i]) / total
    return key.shape[0]


@kernel("quoted_spread", params=NoParams, inputs=("best_bid", "best_ask"),
        outputs=("quoted_spread",), formula="(ask - bid) / midprice * 10,000 (bps)")
@njit(nogil=True, cache=True)
def quoted_spread(key, ts, bid, ask, out):
    """Quoted spread in basis points: (ask - bid) / ((bid + ask) / 2) * 10,000.

    Warm-up: none. NaN policy: NaN when either input is NaN or the midprice is 0.
    State: none.

    >>> # bid 99, ask 101 -> 2 / 100 * 10,000 = 200.0
    """
    for i in range(key.shape[0]):
        mid = (bid[i] + ask[i]) * 0.5
        if mid == 0.0 or np.isnan(mid):
            out[i] = np.nan
        else:
            out[i] = (ask[i] - bid[i]) / mid * 10_000.0
    return key.shape[0]


@kernel("l1_imbalance", params=NoParams, inputs=("best_bid_size", "best_ask_size"),
        outputs=("l1_imbalance",), formula="(bid_size - ask_size) / (bid_size + ask_size)")
@njit(nogil=True, cache=True)
def l1_imbalance(key, ts, bid_size, ask_size, out):
    """Top-of-book size imbalance: (bid_size - ask_size) / (bid_size + ask_size), in [-1, 1].

    Warm-up: none. NaN policy: NaN when either input is NaN or both sizes are 0. State: none.

    >>> # bid size 3, ask size 1 -> 0.5
    """
    for i in range(key.shape[0]):
        total = bid_size[i] + ask_size[i]
        if total == 0.0 or np.isnan(total):
            out[i] = np.nan
        else:
            out[i] = (bid_size[i] - ask_size[i]) / total
    return key.shape[0]


# --------------------------------------------------------------------------- order flow imbalance


class OfiParams(WindowParams):
    """ofi: window 1 (each event's own e_t) unless a row count or a duration is given."""

    window: Window = PydanticField(1,
                                   description="rows summed (1: the per-tick order flow imbalance)")


def _ofi_state(p: OfiParams) -> list[Field]:
    return [Field("prev_bid"), Field("prev_ask"), Field("prev_bid_size"),
            Field("prev_ask_size"),
            *ring_fields(initial_capacity(p.window), ("e",), per_row=isinstance(p.window, int),
                         stub_ts=isinstance(p.window, int)),
            Field("e_sum", (), np.float64, 0.0), Field("e_since", (), np.int64, 0)]


def _ofi_args(p: OfiParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


@kernel("ofi", params=OfiParams,
        inputs=("best_bid", "best_ask", "best_bid_size", "best_ask_size"), outputs=("ofi",),
        state=_ofi_state, args=_ofi_args, time_window=True,
        formula="sum over the window of e_t = 1[b_t >= b_{t-1}] q^b_t - 1[b_t <= b_{t-1}] "
                "q^b_{t-1} - 1[a_t <= a_{t-1}] q^a_t + 1[a_t >= a_{t-1}] q^a_{t-1}")
@njit(nogil=True, cache=True)
def ofi(key, ts, bid, ask, bid_size, ask_size, prev_bid, prev_ask, prev_bid_size,
        prev_ask_size, e, e_ts, e_head, e_count, e_sum, e_since, out, rows, span, min_periods):
    """Order flow imbalance (Cont, Kukanov and Stoikov 2014, "The price impact of order book
    events"), summed over a row or time window.

    Per event: e_t = 1[b_t >= b_{t-1}] q^b_t - 1[b_t <= b_{t-1}] q^b_{t-1}
    - 1[a_t <= a_{t-1}] q^a_t + 1[a_t >= a_{t-1}] q^a_{t-1}; the output is the sum of e over the
    window (window 1 = e_t itself).

    Warm-up: NaN on a key's first valid row (no previous quote), then NaN until the window holds
    ``window`` values of e (row windows) or ``min_periods`` of them (time windows).
    NaN policy: a NaN in any of the four inputs outputs NaN and leaves the state unchanged, so
    the next event is compared with the last valid quote.
    State: the previous quote (``prev_*``), a ring of e values with timestamps, their running
    sum ``e_sum`` (recomputed from the ring every RECOMPUTE pushes, and reset to exactly 0 when
    the ring empties) and ``e_since``, the pushes since the last recompute.

    >>> # (b, a, qb, qa): (99, 101, 5, 5) then (100, 101, 2, 4) -> e = 2 - 0 - 4 + 5 = 3.0
    """
    cap = e.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        b = bid[i]
        a = ask[i]
        qb = bid_size[i]
        qa = ask_size[i]
        if np.isnan(b) or np.isnan(a) or np.isnan(qb) or np.isnan(qa):
            out[i] = np.nan
            continue
        pb = prev_bid[k]
        if np.isnan(pb):
            prev_bid[k] = b
            prev_ask[k] = a
            prev_bid_size[k] = qb
            prev_ask_size[k] = qa
            out[i] = np.nan
            continue
        pa = prev_ask[k]
        flow = 0.0
        if b >= pb:
            flow += qb
        if b <= pb:
            flow -= prev_bid_size[k]
        if a <= pa:
            flow -= qa
        if a >= pa:
            flow += prev_ask_size[k]
        t = ts[i]
        # The key's ring state in locals, stored once (see averages.rolling_moments).
        c = e_count[k]
        h = e_head[k]
        total = e_sum[k]
        # Evictions are idempotent, so they may run before the ring-full check.
        if rows > 0:
            while c >= rows:
                total -= e[k, h]
                h = h + 1 if h + 1 < cap else 0
                c -= 1
        else:
            limit = t - span
            while c > 0 and e_ts[k, h] <= limit:
                total -= e[k, h]
                h = h + 1 if h + 1 < cap else 0
                c -= 1
        if c == 0:
            total = 0.0
        if c == cap:
            e_count[k] = c
            e_head[k] = h
            e_sum[k] = total
            return i
        pos = h + c
        if pos >= cap:
            pos -= cap
        e[k, pos] = flow
        if rows == 0:  # a row window's e_ts is a zero-wide stub
            e_ts[k, pos] = t
        c += 1
        total += flow
        n_since = e_since[k] + 1
        if n_since >= RECOMPUTE:
            total = 0.0
            j = h
            for _ in range(c):
                total += e[k, j]
                j = j + 1 if j + 1 < cap else 0
            n_since = 0
        e_count[k] = c
        e_head[k] = h
        e_sum[k] = total
        e_since[k] = n_since
        prev_bid[k] = b
        prev_ask[k] = a
        prev_bid_size[k] = qb
        prev_ask_size[k] = qa
        if c >= rows if rows > 0 else c >= min_periods:
            out[i] = total
        else:
            out[i] = np.nan
    return key.shape[0]
