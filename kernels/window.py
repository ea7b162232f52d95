"""Shared numba helpers for rolling windows: one ring buffer for row and time windows.

A ring for key ``k`` is ``vals[k, :]`` with ``head[k]`` (index of the oldest value) and
``count[k]``. Row windows (``rows > 0``) hold at most ``rows`` values; time windows
(``span > 0``) hold the rows with timestamp in ``(t - span, t]`` and may need to grow, which the
kernel signals by returning the row index it stopped at (see kernels.base).

Rolling moments keep sums of ``x - shift`` rather than of ``x`` so that prices near 60,000 with a
spread of a few dollars keep their precision; after ``max(count, 32)`` pushes the sums
are recomputed from the buffer (two-pass), which bounds the drift of add/remove updates. A
run-length of equal
values makes the variance of a constant window exactly 0, as pandas does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

RECOMPUTE = 256
RECENTRE_MIN = 32
PEAK_RATIO = 1e3
"""Running sums are recomputed two-pass from the ring when the largest shifted sum seen since
the last recompute exceeds this multiple of the current centred sum. Add/remove rounding is
relative to that peak, so this bounds the digits lost when a large value leaves a window of
small ones (or a drifting price leaves the shift behind) to about 3 of 16."""


@njit(inline="always", nogil=True)
def mom_due(since, count, k):
    """Moments are re-centred after max(window count, 32) pushes: O(1) amortised, and the
    shift never lags far behind a drifting price (which would cost digits to cancellation)."""
    return since[k] >= max(count[k], RECENTRE_MIN)


@njit(inline="always", nogil=True)
def ring_expired(tss, head, count, k, t, rows, span):
    """True when the oldest value must leave before a value at time ``t`` enters."""
    if count[k] == 0:
        return False
    if rows > 0:
        return count[k] >= rows
    return tss[k, head[k]] <= t - span


@njit(inline="always", nogil=True)
def ring_advance(head, count, k, cap):
    head[k] = (head[k] + 1) % cap
    count[k] -= 1


@njit(inline="always", nogil=True)
def ring_slot(head, count, k, cap):
    """Index where the next value goes."""
    return (head[k] + count[k]) % cap


@njit(inline="always", nogil=True)
def ring_at(head, k, cap, j):
    """Index of the j-th oldest value."""
    return (head[k] + j) % cap


@njit(inline="always", nogil=True)
def is_warm(count, k, rows, min_periods):
    if rows > 0:
        return count[k] >= rows
    return count[k] >= min_periods


# --------------------------------------------------------------------------- rolling moments


@njit(inline="always", nogil=True)
def mom_add(shift, s1, s2, since, last, run, k, x, count_before):
    if count_before == 0:
        shift[k] = x
        s1[k] = 0.0
        s2[k] = 0.0
    d = x - shift[k]
    s1[k] += d
    s2[k] += d * d
    since[k] += 1
    if x == last[k]:
        run[k] += 1
    else:
        run[k] = 1
        last[k] = x


@njit(inline="always", nogil=True)
def mom_remove(shift, s1, s2, k, x):
    d = x - shift[k]
    s1[k] -= d
    s2[k] -= d * d


@njit(nogil=True)
def mom_recompute(shift, s1, s2, since, k, vals, head, count):
    """Exact two-pass sums from the buffer, re-centred on its mean."""
    n = count[k]
    cap = vals.shape[1]
    if n == 0:
        s1[k] = 0.0
        s2[k] = 0.0
        since[k] = 0
        return
    total = 0.0
    for j in range(n):
        total += vals[k, (head[k] + j) % cap]
    centre = total / n
    a = 0.0
    b = 0.0
    for j in range(n):
        d = vals[k, (head[k] + j) % cap] - centre
        a += d
        b += d * d
    shift[k] = centre
    s1[k] = a
    s2[k] = b
    since[k] = 0


@njit(inline="always", nogil=True)
def recentred_sums(vals, k, h, c):
    """(centre, sum of x - centre, sum of (x - centre)^2) over the ring, two-pass."""
    cap = vals.shape[1]
    total = 0.0
    j = h
    for _ in range(c):
        total += vals[k, j]
        j = j + 1 if j + 1 < cap else 0
    centre = total / c
    a = 0.0
    b = 0.0
    j = h
    for _ in range(c):
        d = vals[k, j] - centre
        a += d
        b += d * d
        j = j + 1 if j + 1 < cap else 0
    return centre, a, b


@njit(inline="always", nogil=True)
def mom_mean(shift, s1, k, n):
    return shift[k] + s1[k] / n


@njit(inline="always", nogil=True)
def mom_var(s1, s2, run, k, n, ddof):
    """Variance with ``ddof``; exactly 0 when the whole window is one repeated value."""
    if n - ddof <= 0:
        return np.nan
    if run[k] >= n:
        return 0.0
    v = (s2[k] - s1[k] * s1[k] / n) / (n - ddof)
    if v < 0.0:
        return 0.0
    return v


# --------------------------------------------------------------------------- sorted windows


@njit(inline="always", nogil=True)
def sorted_insert(sbuf, k, n, x):
    """Insert x into the sorted prefix sbuf[k, :n] (binary search + shift)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if sbuf[k, mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    for j in range(n, lo, -1):
        sbuf[k, j] = sbuf[k, j - 1]
    sbuf[k, lo] = x


@njit(inline="always", nogil=True)
def sorted_remove(sbuf, k, n, x):
    """Remove one occurrence of x from the sorted prefix sbuf[k, :n]."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if sbuf[k, mid] < x:
            lo = mid + 1
        else:
            hi = mid
    for j in range(lo, n - 1):
        sbuf[k, j] = sbuf[k, j + 1]


@njit(inline="always", nogil=True)
def sorted_quantile(sbuf, k, n, q):
    """numpy's default (linear) quantile of the sorted prefix sbuf[k, :n]."""
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    hi = lo + 1 if lo + 1 < n else lo
    frac = pos - lo
    a = sbuf[k, lo]
    b = sbuf[k, hi]
    return a + (b - a) * frac


# --------------------------------------------------------------------------- branchless search
# Branchless binary searches over a sorted prefix (a select per level instead of a branch that
# random data mispredicts half the time). Note for hot loops: a numba helper that takes an array
# pays a reference-count increment/decrement pair per call even when inlined (~5-10 ns per
# array per row, ~100 ns per row for a helper taking a ring's dozen arrays), so kernels read a
# key's state into locals and write these steps out (kernels.risk.tail_window_walk does).


@njit(inline="always", nogil=True)
def sorted_lower(sbuf, k, n, x):
    """First index j in the sorted prefix sbuf[k, :n] with sbuf[k, j] >= x (n if none)."""
    base = 0
    m = n
    while m > 1:
        half = m >> 1
        base = base + half if sbuf[k, base + half] < x else base
        m -= half
    if m == 1 and sbuf[k, base] < x:
        base += 1
    return base


@njit(inline="always", nogil=True)
def sorted_upper(sbuf, k, n, x):
    """First index j in the sorted prefix sbuf[k, :n] with sbuf[k, j] > x (n if none)."""
    base = 0
    m = n
    while m > 1:
        half = m >> 1
        base = base + half if sbuf[k, base + half] <= x else base
        m -= half
    if m == 1 and sbuf[k, base] <= x:
        base += 1
    return base


# --------------------------------------------------------------------------- monotonic deques


@njit(inline="always", nogil=True)
def deque_push(qv, qseq, qhead, qcount, k, v, s, oldest):
    """Push value ``v`` of row number ``s`` onto key k's monotonic max-deque; return its max.

    The deque is a ring ``qv[k, :]`` / ``qseq[k, :]`` with ``qhead[k]`` and ``qcount[k]``
    holding, oldest first, the values no later value is >= to, with their row numbers. Rows
    numbered below ``oldest`` have left the window and leave the front; values <= v leave
    the back; v is appended. O(1) amortised. (A min-deque pushes -v and negates the max.)
    """
    cap = qv.shape[1]
    qh = qhead[k]
    qc = qcount[k]
    while qc > 0 and qseq[k, qh] < oldest:
        qh = qh + 1 if qh + 1 < cap else 0
        qc -= 1
    while qc > 0:
        back = qh + qc - 1
        if back >= cap:
            back -= cap
        if qv[k, back] > v:
            break
        qc -= 1
    pos = qh + qc
    if pos >= cap:
        pos -= cap
    qv[k, pos] = v
    qseq[k, pos] = s
    qhead[k] = qh
    qcount[k] = qc + 1
    return qv[k, qh]
