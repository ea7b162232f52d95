"""The as-of join's matching: numba loops that merge the two streams in time order and pick
each left row's match, and the array helpers the operator's buffers use (see ``asof.py``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit


@njit(nogil=True, cache=True)
def merge_events(lts, lkey, l_proc, cap, rts, rkey, r_applied, wl, wr, exact, need_bwd,
                 need_fwd, last_r, q_head, q_tail, q_next, bwd, fwd, out):
    """Merge pending left and right events in time order, left first on equal times.

    ``wl``/``wr`` are the streams' watermarks (no future row is earlier). A left row at t can
    go once no right row earlier than t can come (t <= wr); a right row at t once every left
    row at or before t is here (t < wl). Right rows update their key's last row and answer
    forward waits; left rows take their backward match (at once when exact matches are
    excluded, else once no right row at or before their time is still to come) and queue for
    a forward match."""
    i = l_proc
    j = r_applied
    n_l = lts.shape[0]
    n_r = rts.shape[0]
    while True:
        left_ok = i < n_l and lts[i] <= wr
        right_ok = j < n_r and rts[j] < wl
        if not left_ok and not right_ok:
            break
        if right_ok and (not left_ok or rts[j] < lts[i]):
            t = rts[j]
            k = rkey[j]
            if need_bwd and exact:
                while cap < i and lts[cap] < t:
                    bwd[cap] = last_r[lkey[cap]]
                    cap += 1
            if need_fwd:
                h = q_head[k]
                while h != -1 and (lts[h] <= t if exact else lts[h] < t):
                    fwd[h] = j
                    h = q_next[h]
                q_head[k] = h
                if h == -1:
                    q_tail[k] = -1
            last_r[k] = j
            j += 1
        else:
            k = lkey[i]
            if need_bwd and not exact:
                bwd[i] = last_r[k]
            if need_fwd:
                q_next[i] = -1
                if q_tail[k] == -1:
                    q_head[k] = i
                else:
                    q_next[q_tail[k]] = i
                q_tail[k] = i
            i += 1
    if need_bwd and exact:
        while cap < i and lts[cap] < wr and (j == n_r or rts[j] > lts[cap]):
            bwd[cap] = last_r[lkey[cap]]
            cap += 1
    else:
        cap = i
    out[0] = i
    out[1] = j
    out[2] = cap
    # no right row still to be applied is earlier than this
    out[3] = min(rts[j], wr) if j < n_r else wr


@njit(nogil=True, cache=True)
def expire(lts, limit, tolerance, q_head, q_tail, q_next):
    """Drop forward waits that no future right row can satisfy within the tolerance."""
    for k in range(q_head.shape[0]):
        h = q_head[k]
        while h != -1 and lts[h] + tolerance < limit:
            h = q_next[h]
        q_head[k] = h
        if h == -1:
            q_tail[k] = -1


@njit(nogil=True, cache=True)
def final_prefix(lts, l_proc, cap, need_bwd, fwd, need_fwd, ended, limit, tolerance):
    """How many pending left rows, from the first, have a match that can no longer change."""
    if ended:
        return l_proc
    for i in range(l_proc):
        if need_bwd and i >= cap:
            return i
        if need_fwd and fwd[i] < 0 and not (tolerance >= 0 and lts[i] + tolerance < limit):
            return i
    return l_proc


@njit(nogil=True, cache=True)
def choose(lts, bwd, fwd, rts, direction, tolerance):
    """The matched right row of each left row (-1 for none): 0 backward, 1 forward,
    2 nearest (the backward match wins equal distances, as in pandas)."""
    n = lts.shape[0]
    out = np.full(n, -1, np.int64)
    for i in range(n):
        b = bwd[i] if direction != 1 else -1
        f = fwd[i] if direction != 0 else -1
        db = lts[i] - rts[b] if b >= 0 else -1
        df = rts[f] - lts[i] if f >= 0 else -1
        if b >= 0 and tolerance >= 0 and db > tolerance:
            b = -1
        if f >= 0 and tolerance >= 0 and df > tolerance:
            f = -1
        if b >= 0 and (f < 0 or db <= df):
            out[i] = b
        elif f >= 0:
            out[i] = f
    return out


def append(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return b if a.size == 0 else np.concatenate([a, b])


def take(column: pa.ChunkedArray, match: np.ndarray) -> pa.Array:
    """Rows ``match`` of a column, null where match < 0 (numpy for plain numeric columns)."""
    if column.num_chunks == 1 and column.null_count == 0 and (
            pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        values = column.chunk(0).to_numpy()
        missing = match < 0
        return pa.array(values[np.where(missing, 0, match)] if values.size else
                        np.zeros(match.size, values.dtype), mask=missing)
    return column.take(pa.array(match, type=pa.int64(), mask=match < 0))


def grow(arr: np.ndarray, n: int, fill: int) -> np.ndarray:
    if n <= arr.shape[0]:
        return arr
    out = np.full(max(n, 2 * arr.shape[0]), fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out
