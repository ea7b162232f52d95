"""Trade flow (family "liquidity"): VWAP, tick-rule signed volume and VPIN, the kernels that
read each trade's price and size."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Field,
    NoParams,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
    window_args,
)
from tickflow.kernels.statistics import PosInt
from tickflow.kernels.window import (
    RECOMPUTE,
    is_warm,
    ring_advance,
    ring_at,
    ring_expired,
    ring_slot,
)

# --------------------------------------------------------------------------- VWAP


class VwapParams(WindowParams):
    """vwap: no window (since the key's first trade), a row count or a duration."""

    window: Window | None = PydanticField(None,
                                          description="rows or a duration; none: cumulative since "
                                                      "the first tick")


def _vwap_state(p: VwapParams) -> list[Field]:
    cap = 1 if p.window is None else initial_capacity(p.window)
    return [*ring_fields(cap, values=("pv", "vol")), Field("spv", (), np.float64, 0.0),
            Field("svol", (), np.float64, 0.0), Field("vsince", (), np.int64, 0)]


def _vwap_args(p: VwapParams) -> tuple[int, int, int, bool]:
    if p.window is None:
        return 0, 0, p.min_periods, True
    rows, span = window_args(p.window)
    return rows, span, p.min_periods, False


@kernel("vwap", family="liquidity", params=VwapParams, inputs=("price", "last_size"),
        outputs=("vwap",), state=_vwap_state, args=_vwap_args, time_window=True,
        formula="sum(p * size) / sum(size) over the window (or since the start)")
@njit(nogil=True, cache=True)
def vwap(key, ts, price, size, pv, vol, tss, head, count, spv, svol, vsince, out, rows, span,
         min_periods, cumulative):
    """Volume-weighted average price: sum(p * size) / sum(size).

    Without a window the sums run from the key's first trade and the output starts there;
    with a row or time window the sums cover the window, NaN until it holds ``window`` trades
    (rows) or ``min_periods`` (time). NaN when the window's size sum is 0. A row with price or
    size NaN (a quote without a trade) outputs NaN and changes nothing.

    State: the running sums ``spv`` and ``svol``; for windows also a ring of (p * size, size)
    with timestamps (the sums are recomputed from it every RECOMPUTE pushes).

    >>> # (p, size) = (100, 1), (103, 2) without a window -> 100.0, 102.0
    """
    cap = pv.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        s = size[i]
        if np.isnan(p) or np.isnan(s):
            out[i] = np.nan
            continue
        if cumulative:
            spv[k] += p * s
            svol[k] += s
            out[i] = spv[k] / svol[k] if svol[k] != 0.0 else np.nan
            continue
        t = ts[i]
        while ring_expired(tss, head, count, k, t, rows, span):
            spv[k] -= pv[k, head[k]]
            svol[k] -= vol[k, head[k]]
            ring_advance(head, count, k, cap)
        if count[k] == 0:
            spv[k] = 0.0
            svol[k] = 0.0
        if count[k] == cap:
            return i
        pos = ring_slot(head, count, k, cap)
        pv[k, pos] = p * s
        vol[k, pos] = s
        tss[k, pos] = t
        count[k] += 1
        spv[k] += p * s
        svol[k] += s
        vsince[k] += 1
        if vsince[k] >= RECOMPUTE:
            a = 0.0
            b = 0.0
            for j in range(count[k]):
                q = ring_at(head, k, cap, j)
                a += pv[k, q]
                b += vol[k, q]
            spv[k] = a
            svol[k] = b
            vsince[k] = 0
        if not is_warm(count, k, rows, min_periods) or svol[k] == 0.0:
            out[i] = np.nan
        else:
            out[i] = spv[k] / svol[k]
    return key.shape[0]


# --------------------------------------------------------------------------- tick rule


@njit(inline="always", nogil=True)
def tick_sign(prev, sign, k, p):
    """Update and return the tick-rule sign: +1 / -1 on an up / down move, unchanged on no
    move, 0 until the key's first non-zero change."""
    if not np.isnan(prev[k]):
        if p > prev[k]:
            sign[k] = 1.0
        elif p < prev[k]:
            sign[k] = -1.0
    prev[k] = p
    return sign[k]


@kernel("signed_volume", family="liquidity",
        params=NoParams, inputs=("price", "last_size"),
        outputs=("signed_volume",),
        state=lambda p: [Field("prev"), Field("sign", (), np.float64, 0.0)],
        formula="sign of the last non-zero price change (tick rule) times size")
@njit(nogil=True, cache=True)
def signed_volume(key, ts, price, size, prev, sign, out):
    """Tick-rule signed volume: the sign of the key's last non-zero price change (0 until
    there is one) times the trade size.

    A row with price or size NaN outputs NaN and changes nothing (its price is not used for
    the tick rule).

    State: ``prev`` (last valid price) and ``sign`` per key.

    >>> # (p, size) = (100, 1), (101, 2), (101, 3), (100, 1) -> 0, 2, 3, -1
    """
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        s = size[i]
        if np.isnan(p) or np.isnan(s):
            out[i] = np.nan
            continue
        out[i] = tick_sign(prev, sign, k, p) * s
    return key.shape[0]


# --------------------------------------------------------------------------- VPIN


class VpinParams(Params):
    """vpin: bucket_volume > 0 (required) and the number of buckets averaged (50)."""

    bucket_volume: float = PydanticField(gt=0.0, description="traded volume per bucket (required)")
    buckets: PosInt = PydanticField(50, description="buckets in the rolling VPIN average")


def _vpin_state(p: VpinParams) -> list[Field]:
    return [Field("prev"), Field("sign", (), np.float64, 0.0),
            Field("filled", (), np.float64, 0.0), Field("net", (), np.float64, 0.0),
            *ring_fields(p.buckets, values=("imb",), with_ts=False), Field("vpin_val")]


@njit(inline="always", nogil=True)
def _push_bucket(imb, head, count, k, value, buckets):
    cap = imb.shape[1]
    if count[k] >= buckets:
        ring_advance(head, count, k, cap)
    imb[k, ring_slot(head, count, k, cap)] = value
    count[k] += 1


@kernel("vpin", family="liquidity", params=VpinParams, inputs=("price", "last_size"),
        outputs=("vpin",), state=_vpin_state, args=lambda p: (p.bucket_volume, p.buckets),
        formula="mean over the last `buckets` volume buckets of |V_buy - V_sell| / bucket_volume")
@njit(nogil=True, cache=True)
def vpin(key, ts, price, size, prev, sign, filled, net, imb, head, count, vpin_val, out,
         bucket_volume, buckets):
    """Volume-synchronised probability of informed trading (Easley, Lopez de Prado & O'Hara
    2012) with tick-rule classification.

    Each trade's size is poured into buckets of ``bucket_volume`` (a trade is split across
    buckets) and counted as buy or sell volume by the tick-rule sign of its price (see
    ``signed_volume``); before the key's first non-zero price change the sign is 0 and the
    volume fills buckets without imbalance (as if split evenly). A full bucket contributes
    |V_buy - V_sell| / bucket_volume; vpin is the mean of the last ``buckets`` of them,
    updated as buckets fill, NaN until that many buckets are full. A row with price or size
    NaN outputs NaN and changes nothing; a size <= 0 adds no volume.

    State: the tick rule (``prev``, ``sign``), the open bucket (``filled``, signed ``net``),
    a ring of the last ``buckets`` bucket imbalances and the current value ``vpin_val``.

    >>> # bucket 2, buckets 1: (p, size) = (100, 1), (101, 1) -> NaN, |0 + 1| / 2 = 0.5
    """
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        s = size[i]
        if np.isnan(p) or np.isnan(s):
            out[i] = np.nan
            continue
        sg = tick_sign(prev, sign, k, p)
        if s > 0.0:
            room = bucket_volume - filled[k]
            if s < room:
                filled[k] += s
                net[k] += sg * s
            else:
                _push_bucket(imb, head, count, k, abs(net[k] + sg * room) / bucket_volume,
                             buckets)
                rest = s - room
                whole = np.floor(rest / bucket_volume)
                left = rest - whole * bucket_volume
                if left < 0.0:
                    left = 0.0
                full = abs(sg)
                m = int(min(whole, float(buckets)))
                for _ in range(m):
                    _push_bucket(imb, head, count, k, full, buckets)
                filled[k] = left
                net[k] = sg * left
                if count[k] >= buckets:
                    total = 0.0
                    cap = imb.shape[1]
                    for j in range(buckets):
                        total += imb[k, ring_at(head, k, cap, j)]
                    vpin_val[k] = total / buckets
        out[i] = vpin_val[k]
    return key.shape[0]
