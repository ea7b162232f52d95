"""Returns: log and simple returns, lag, diff and the running log P&L."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import Field, Params, kernel, ring_fields


@kernel("log_returns", inputs=("price",), outputs=("log_return",),
        state=lambda p: [Field("prev")],
        formula="ln(p_t / p_{t-1}); NaN on the first row of a key")
@njit(nogil=True, cache=True)
def log_returns(key, ts, price, prev, out):
    """Log return ln(p_t / p_{t-1}) against the key's previous valid price.

    Warm-up: NaN on the first valid row of a key. A NaN price outputs NaN and leaves ``prev``
    unchanged; a zero or negative price ratio (no finite log) outputs NaN.

    State: ``prev`` per key, the last valid price (NaN before the first).

    >>> # prices 100, 110 -> NaN, ln(1.1)
    """
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        if np.isnan(p):
            out[i] = np.nan
            continue
        q = prev[k]
        r = np.nan
        if not np.isnan(q) and q != 0.0:
            ratio = p / q
            if ratio > 0.0 and np.isfinite(ratio):
                r = np.log(ratio)
        out[i] = r
        prev[k] = p
    return key.shape[0]


@kernel("simple_returns", inputs=("price",), outputs=("return",),
        state=lambda p: [Field("prev")],
        formula="p_t / p_{t-1} - 1; NaN on the first row of a key")
@njit(nogil=True, cache=True)
def simple_returns(key, ts, price, prev, out):
    """Simple return p_t / p_{t-1} - 1 against the key's previous valid price.

    Warm-up: NaN on the first valid row of a key. A NaN price outputs NaN and leaves ``prev``
    unchanged; a previous price of 0 outputs NaN (never inf).

    State: ``prev`` per key, the last valid price.

    >>> # prices 100, 110 -> NaN, 0.1
    """
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        if np.isnan(p):
            out[i] = np.nan
            continue
        q = prev[k]
        if np.isnan(q) or q == 0.0:
            out[i] = np.nan
        else:
            out[i] = p / q - 1.0
        prev[k] = p
    return key.shape[0]


class LagParams(Params):
    """lag / diff: how many valid rows back (k >= 1)."""

    k: int = PydanticField(1, ge=1, description="rows back")


def _lag_state(p: LagParams) -> list[Field]:
    return ring_fields(p.k, values=("vals",), with_ts=False)


@njit(nogil=True, cache=True)
def lag_walk(key, x, vals, head, count, out, kk, subtract):
    """Keep the last ``kk`` valid values per key; write x_{t-kk} (or x_t - x_{t-kk})."""
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        h = head[k]
        c = count[k]
        if c >= kk:  # full (cap == kk): the oldest value leaves and v takes its slot
            old = vals[k, h]
            out[i] = v - old if subtract else old
            vals[k, h] = v
            head[k] = h + 1 if h + 1 < cap else 0
        else:
            out[i] = np.nan
            pos = h + c
            if pos >= cap:
                pos -= cap
            vals[k, pos] = v
            count[k] = c + 1
    return key.shape[0]


@kernel("lag", params=LagParams, inputs=("log_return",), outputs=("{input}_lag{k}",),
        state=_lag_state, args=lambda p: (p.k,),
        formula="x_{t-k}, NaN until k earlier rows exist")
@njit(nogil=True, cache=True)
def lag(key, ts, x, vals, ring_head, ring_count, out, k):
    """The value k valid rows earlier in the same key: x_{t-k}.

    Warm-up: NaN until k earlier valid rows of the key exist. A NaN input outputs NaN and is
    not counted as a row (the ring is unchanged).

    State: a ring of the key's last k valid values.

    >>> # x = 1, 2, 3 with k = 1 -> NaN, 1, 2
    """
    return lag_walk(key, x, vals, ring_head, ring_count, out, k, False)


@kernel("diff", params=LagParams, inputs=("price",), outputs=("{input}_diff{k}",),
        state=_lag_state, args=lambda p: (p.k,),
        formula="x_t - x_{t-k}, NaN until k earlier rows exist")
@njit(nogil=True, cache=True)
def diff(key, ts, x, vals, ring_head, ring_count, out, k):
    """Difference with the value k valid rows earlier in the same key: x_t - x_{t-k}.

    Warm-up: NaN until k earlier valid rows exist. A NaN input outputs NaN and leaves the ring
    unchanged.

    State: a ring of the key's last k valid values.

    >>> # x = 1, 4, 9 with k = 1 -> NaN, 3, 5
    """
    return lag_walk(key, x, vals, ring_head, ring_count, out, k, True)


@kernel("pnl", inputs=("log_return",), outputs=("pnl",),
        state=lambda p: [Field("total", fill=0.0)],
        formula="running sum of the key's log returns")
@njit(nogil=True, cache=True)
def pnl(key, ts, r, total, out):
    """Buy-and-hold log P&L: the running sum of the key's log returns.

    Output from the first valid return on. A NaN return outputs NaN and leaves the sum
    unchanged (the first row of a key, whose log return is NaN, outputs NaN).

    State: ``total`` per key, starting at 0.

    >>> # r = NaN, 0.01, -0.02 -> NaN, 0.01, -0.01
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        total[k] += v
        out[i] = total[k]
    return key.shape[0]
