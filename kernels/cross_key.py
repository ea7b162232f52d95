"""Cross-key kernels: statistics of a pair of keys, whose state spans both keys.

A cross-key kernel declares ``extra={"cross_key": ("a", "b")}``: the params that name the
keys it reads. The engine runs it on whole batches (never in the key-sharded lanes) with
global key ids, and passes the ids of those keys (-1 for a key not seen yet) right after the
outputs::

    fn(key, ts, *inputs, *state_fields, *outputs, a_id, b_id, *args) -> int

Its state has one row (index 0) that belongs to the pair.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import Duration, Field, Params, kernel, parse_duration_us

RECOMPUTE = 256


class HayashiYoshidaParams(Params):
    """The pair (``a``, ``b``: two key values, e.g. symbols) and the time window."""

    a: str = PydanticField(description="first key (symbol) of the pair, e.g. BTC-USD")
    b: str = PydanticField(description="second key (symbol) of the pair, e.g. ETH-USD")
    window: Duration = PydanticField("60s",
                                     description="time window of overlapping return intervals, "
                                                 "e.g. 60s")

    @model_validator(mode="after")
    def _two_keys(self) -> HayashiYoshidaParams:
        if self.a == self.b:
            raise ValueError(f"a and b must be two different keys, found {self.a!r} twice")
        return self


def _ring(group: str) -> list[Field]:
    """Return intervals of one key: return, pair sum credited to it, start and end time."""
    return [Field(f"{group}_r", (16,), np.float64, np.nan, "ring", group),
            Field(f"{group}_c", (16,), np.float64, 0.0, "ring", group),
            Field(f"{group}_start", (16,), np.int64, 0, "ring", group),
            Field(f"{group}_ts", (16,), np.int64, 0, "ring", group),
            Field(f"{group}_head", (), np.int64, 0), Field(f"{group}_count", (), np.int64, 0)]


def _hy_state(p: HayashiYoshidaParams) -> list[Field]:
    # per key: time of its last valid row, start of the interval ending there, and how much
    # is known (0 nothing, 1 a first row, 2 an interval ending at `last`)
    per_key = [Field("last", (2,), np.int64, 0), Field("last_start", (2,), np.int64, 0),
               Field("known", (2,), np.int64, 0), Field("rv", (2,), np.float64, 0.0)]
    return [*_ring("ra"), *_ring("rb"), *per_key, Field("cov", (), np.float64, 0.0),
            Field("since", (), np.int64, 0)]


def _hy_args(p: HayashiYoshidaParams) -> tuple[int]:
    return (parse_duration_us(p.window),)


@njit(nogil=True, cache=True)
def _evict(r, c, ends, head, count, rv, cov, j, limit):
    """Drop intervals of key j (0 = a, 1 = b) that end at or before ``limit``, with their pairs."""
    cap = r.shape[1]
    h, n = head[0], count[0]
    while n > 0 and ends[0, h] <= limit:
        rv[0, j] -= r[0, h] * r[0, h]
        cov[0] -= c[0, h]
        h = h + 1 if h + 1 < cap else 0
        n -= 1
    head[0], count[0] = h, n


@njit(nogil=True, cache=True)
def _pair_with(r_new, s, e, r, c, starts, ends, head, count, cov):
    """Credit r_new * r_j to every interval j of the other key that overlaps (s, e].

    The other key's intervals tile its time axis in order, so the overlapping ones are the
    newest few: walk back until an interval ends at or before s.
    """
    cap = r.shape[1]
    n = count[0]
    total = 0.0
    h = head[0] + n - 1  # the newest interval
    if h >= cap:
        h -= cap
    for _ in range(n):
        if ends[0, h] <= s:
            break
        if max(s, starts[0, h]) < min(e, ends[0, h]):
            p = r_new * r[0, h]
            c[0, h] += p
            total += p
        h = h - 1 if h > 0 else cap - 1
    cov[0] += total


@njit(nogil=True, cache=True)
def _push(r_new, s, e, r, c, starts, ends, head, count, rv, j):
    cap = r.shape[1]
    pos = (head[0] + count[0]) % cap
    r[0, pos] = r_new
    c[0, pos] = 0.0
    starts[0, pos] = s
    ends[0, pos] = e
    count[0] += 1
    rv[0, j] += r_new * r_new


@njit(nogil=True, cache=True)
def _recompute(ra_r, ra_c, ra_head, ra_count, rb_r, rb_c, rb_head, rb_count, rv, cov):
    """Exact sums from the rings, so add/remove rounding cannot drift."""
    total = 0.0
    for j in range(2):
        r, c = (ra_r, ra_c) if j == 0 else (rb_r, rb_c)
        q, n = (ra_head[0], ra_count[0]) if j == 0 else (rb_head[0], rb_count[0])
        cap = r.shape[1]
        sq = 0.0
        for _ in range(n):
            sq += r[0, q] * r[0, q]
            total += c[0, q]
            q = q + 1 if q + 1 < cap else 0
        rv[0, j] = sq
    cov[0] = total


@njit(nogil=True, cache=True)
def _hy_walk(key, ts, x, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rb_r, rb_c, rb_start,
             rb_ts, rb_head, rb_count, last, last_start, known, rv, cov, since, out, a_id, b_id,
             span, want_corr):
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if (k != a_id and k != b_id) or k < 0 or math.isnan(v):
            out[i] = np.nan
            continue
        j = 0 if k == a_id else 1
        t = ts[i]
        _evict(ra_r, ra_c, ra_ts, ra_head, ra_count, rv, cov, 0, t - span)
        _evict(rb_r, rb_c, rb_ts, rb_head, rb_count, rv, cov, 1, t - span)
        state = known[0, j]
        if state == 0:
            known[0, j] = 1  # the key's first valid row: its return has no known start
            last[0, j] = t
        elif state == 1 and t <= last[0, j]:
            pass  # still at the first time stamp: no interval yet
        else:
            if t > last[0, j]:
                s, e = last[0, j], t
            else:  # same time stamp (or earlier): part of the key's last interval
                s, e = last_start[0, j], last[0, j]
            own_count = ra_count if j == 0 else rb_count
            if own_count[0] == ra_r.shape[1]:
                return i  # the caller doubles the rings and retries this row
            if j == 0:
                _pair_with(v, s, e, rb_r, rb_c, rb_start, rb_ts, rb_head, rb_count, cov)
                _push(v, s, e, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rv, 0)
            else:
                _pair_with(v, s, e, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, cov)
                _push(v, s, e, rb_r, rb_c, rb_start, rb_ts, rb_head, rb_count, rv, 1)
            known[0, j] = 2
            last[0, j] = e
            last_start[0, j] = s
            since[0] += 1
            if since[0] >= max(RECOMPUTE, ra_count[0] + rb_count[0]):  # O(1) amortised
                _recompute(ra_r, ra_c, ra_head, ra_count, rb_r, rb_c, rb_head, rb_count, rv,
                           cov)
                since[0] = 0
        if ra_count[0] == 0 or rb_count[0] == 0:
            out[i] = np.nan
        elif not want_corr:
            out[i] = cov[0]
        elif rv[0, 0] > 0.0 and rv[0, 1] > 0.0:
            out[i] = cov[0] / math.sqrt(rv[0, 0] * rv[0, 1])
        else:
            out[i] = np.nan
    return key.shape[0]


_PAIR_FORMULA = "over the pairs of overlapping return intervals of a and b ending in the window"
_STATE = {"params": HayashiYoshidaParams, "inputs": ("log_return",), "state": _hy_state,
          "args": _hy_args, "time_window": True, "extra": {"cross_key": ("a", "b")}}


@kernel("hayashi_yoshida_cov", outputs=("hy_cov",), formula=f"sum r_a,i r_b,j {_PAIR_FORMULA}",
        **_STATE)
@njit(nogil=True, cache=True)
def hayashi_yoshida_cov(key, ts, x, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rb_r, rb_c,
                        rb_start, rb_ts, rb_head, rb_count, last, last_start, known, rv, cov,
                        since, out, a_id, b_id, span):
    """Hayashi-Yoshida (2005) covariance of two keys' returns on their own, asynchronous ticks.

    hy_cov = sum of r_a,i r_b,j over the pairs of return intervals that overlap, with no
    resampling to a common grid (so no Epps effect from previous-tick interpolation).

    A row's return covers the interval (s, t] from its key's previous valid row (time s) to
    the row's time t; rows of a key with equal time stamps share one interval (each one's
    return counts). The window at time t holds the return intervals of ``a`` and of ``b`` that
    END in (t - window, t], like every time window in tickflow: an interval that began before
    the window counts whole, and one that ended before it is out even if its partner is in. A
    pair (one interval of ``a``, one of ``b``) counts when both are in the window and they
    overlap, max(s_a, s_b) < min(t_a, t_b): intervals that only touch do not, and the still
    open interval after a key's last row is not known yet. Timestamps must not decrease.

    Emitted on the rows of ``a`` and ``b`` with a valid return, after adding it. NaN on other
    keys' rows, on NaN returns (which change nothing), and while ``a`` or ``b`` has no
    interval in the window (a key's first valid row only starts its first interval).

    State (one row for the pair): for each key a ring of its intervals (return, start, end,
    and the sum of r_a r_b over the pairs credited to it), its last time and interval start,
    RV_a, RV_b and the running covariance; each pair is credited to its interval that ends
    first, so it leaves with that interval. The sums are recomputed from the rings after
    max(256, intervals in the window) new intervals. Cost: O(overlapping intervals) per row,
    amortised.

    >>> # a: returns 0.01 on (0, 2], b: 0.02 on (1, 3] -> hy_cov 0.0002 on b's row at 3
    """
    return _hy_walk(key, ts, x, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rb_r, rb_c,
                    rb_start, rb_ts, rb_head, rb_count, last, last_start, known, rv, cov, since,
                    out, a_id, b_id, span, False)


@kernel("hayashi_yoshida_corr", outputs=("hy_corr",),
        formula=f"hy_cov / sqrt(RV_a RV_b), sums {_PAIR_FORMULA} (RV: sum r^2)", **_STATE)
@njit(nogil=True, cache=True)
def hayashi_yoshida_corr(key, ts, x, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rb_r,
                         rb_c, rb_start, rb_ts, rb_head, rb_count, last, last_start, known, rv,
                         cov, since, out, a_id, b_id, span):
    """Hayashi-Yoshida correlation: hy_cov / sqrt(RV_a RV_b), RV = sum of r^2 in the window.

    Not clipped to [-1, 1]: the HY covariance is not bounded by the realized variances. NaN
    when RV_a or RV_b is 0. Intervals, window, NaN policy and state: as
    ``hayashi_yoshida_cov``.

    >>> # equal returns on identical ticks of a and b -> hy_corr 1.0
    """
    return _hy_walk(key, ts, x, ra_r, ra_c, ra_start, ra_ts, ra_head, ra_count, rb_r, rb_c,
                    rb_start, rb_ts, rb_head, rb_count, last, last_start, known, rv, cov, since,
                    out, a_id, b_id, span, True)
