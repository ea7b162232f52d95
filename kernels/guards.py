"""Pre-trade and market-data guards: price band, fat finger, throttle, circuit breaker, stale
quotes. Every output is an int8 flag; a row whose inputs are NaN gets 0 (for the ``*_ok``
guards that is the fail-safe answer: the order is not cleared)."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import (
    Duration,
    Field,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    parse_duration_us,
    ring_fields,
    window_args,
)
from tickflow.kernels.window import is_warm, ring_advance, ring_expired, ring_slot


class PriceBandParams(Params):
    """price_band_guard: half-width of the band as a fraction of the reference, 0 <= pct < 1."""

    pct: float = PydanticField(0.05, ge=0.0, lt=1.0,
                               description="allowed distance from the reference price (0.05 = 5%)")


@njit(inline="always", nogil=True)
def in_band(price, ref, pct):
    """ref (1 - pct) <= price <= ref (1 + pct); False when either is NaN."""
    return ref * (1.0 - pct) <= price <= ref * (1.0 + pct)


@kernel("price_band_guard", params=PriceBandParams, inputs=("order_price", "reference"),
        outputs=("price_band_ok",), output_dtypes=(np.int8,), args=lambda p: (float(p.pct),),
        formula="1 when ref (1 - pct) <= order_price <= ref (1 + pct)")
@njit(nogil=True, cache=True)
def price_band_guard(key, ts, order_price, reference, out, pct):
    """Price band check: 1 when ref * (1 - pct) <= order_price <= ref * (1 + pct), else 0.

    The reference is usually the midprice (map it with ``inputs: {reference: midprice}``).
    Stateless; a NaN input outputs 0.

    >>> # ref 100, pct 0.05: 105 -> 1, 105.01 -> 0
    """
    for i in range(key.shape[0]):
        out[i] = 1 if in_band(order_price[i], reference[i], pct) else 0
    return key.shape[0]


class FatFingerParams(Params):
    """fat_finger_guard: band half-width 0 <= pct < 1 and the largest notional (> 0)."""

    pct: float = PydanticField(0.10, ge=0.0, lt=1.0,
                               description="largest allowed price deviation from the last trade "
                                           "(0.10 = 10%)")
    notional_max: float = PydanticField(1e6, gt=0.0, description="largest allowed order notional")


@kernel("fat_finger_guard", params=FatFingerParams,
        inputs=("order_price", "order_size", "reference"), outputs=("fat_finger_ok",),
        output_dtypes=(np.int8,), args=lambda p: (float(p.pct), float(p.notional_max)),
        formula="price band with pct AND order_price * order_size <= notional_max")
@njit(nogil=True, cache=True)
def fat_finger_guard(key, ts, order_price, order_size, reference, out, pct, notional_max):
    """Fat-finger check: 1 when the price is in the band ref * (1 -/+ pct) AND
    order_price * order_size <= notional_max, else 0.

    ``order_size`` is the unsigned order quantity (the notional is taken as given, not its
    absolute value). Stateless; a NaN input outputs 0.

    >>> # ref 100, price 101, size 20_000, notional_max 1e6 -> 0 (notional 2.02e6)
    """
    for i in range(key.shape[0]):
        p = order_price[i]
        ok = in_band(p, reference[i], pct) and p * order_size[i] <= notional_max
        out[i] = 1 if ok else 0
    return key.shape[0]


class ThrottleParams(Params):
    """throttle_check: bucket capacity ``rate`` (>= 1 token: a smaller bucket never holds a
    whole token), refilled at ``rate`` tokens per ``per``."""

    rate: float = PydanticField(100.0, ge=1.0, description="orders allowed per `per` interval")
    per: Duration = PydanticField("1s", description="the throttle's interval, e.g. 1s")


@kernel("throttle_check", params=ThrottleParams, inputs=(), outputs=("throttle_ok",),
        output_dtypes=(np.int8,),
        state=lambda p: [Field("tokens"), Field("last_ts", (), np.int64, 0)],
        args=lambda p: (float(p.rate), float(parse_duration_us(p.per))),
        formula="token bucket per key with capacity rate refilled at rate/per: 1 when a token "
                "is available for the row (then consumed), else 0")
@njit(nogil=True, cache=True)
def throttle_check(key, ts, tokens, last_ts, out, rate, per_us):
    """Token-bucket throttle per key on the row timestamps (int64 us).

    The bucket holds at most ``rate`` tokens and starts full on a key's first row. Before
    each row it refills by ``elapsed_us * rate / per_us`` (capped at ``rate``), where
    elapsed is the time since the key's latest timestamp so far (0 if the row is older).
    throttle_ok = 1 when at least one token is available, which the row then consumes; else 0
    (the row consumes nothing).

    State: ``tokens`` (NaN before the key's first row) and ``last_ts``, the key's latest
    timestamp.

    >>> # rate 2, per 1s, rows at 0, 0, 0, 0.5 s -> 1, 1, 0, 1
    """
    for i in range(key.shape[0]):
        k = key[i]
        t = ts[i]
        if np.isnan(tokens[k]):
            b = rate
            last_ts[k] = t
        else:
            b = tokens[k]
            if t > last_ts[k]:
                b = b + (t - last_ts[k]) * rate / per_us
                if b > rate:
                    b = rate
                last_ts[k] = t
        if b >= 1.0:
            out[i] = 1
            b -= 1.0
        else:
            out[i] = 0
        tokens[k] = b
    return key.shape[0]


class CircuitBreakerParams(WindowParams):
    """circuit_breaker: move threshold pct > 0 over a (T) window (default 60s)."""

    pct: float = PydanticField(0.05, gt=0.0,
                               description="move within the window that trips the breaker (0.05 = "
                                           "5%)")
    window: Window = PydanticField("60s",
                                   description="lookback of the reference price (rows or a "
                                               "duration)")


def _breaker_state(p: CircuitBreakerParams) -> list[Field]:
    return ring_fields(initial_capacity(p.window))


def _breaker_args(p: CircuitBreakerParams) -> tuple[float, int, int, int]:
    rows, span = window_args(p.window)
    return float(p.pct), rows, span, p.min_periods


@kernel("circuit_breaker", params=CircuitBreakerParams, inputs=("price",),
        outputs=("circuit_break",), output_dtypes=(np.int8,), state=_breaker_state,
        args=_breaker_args, time_window=True,
        formula="1 when abs(p / first price of the window - 1) > pct")
@njit(nogil=True, cache=True)
def circuit_breaker(key, ts, price, vals, tss, head, count, out, pct, rows, span, min_periods):
    """Circuit breaker: 1 when abs(p_t / p_first - 1) > pct, p_first being the oldest price
    in the window that ends at (and includes) the row: the last ``window`` valid rows, or
    the rows with timestamp in (t - window, t].

    Warm-up: 0 until the window holds ``window`` valid prices (rows) or ``min_periods``
    (time). A NaN price outputs 0 and leaves the window unchanged; a first price of 0
    outputs 0 (the ratio is undefined).

    State: a ring of the window's prices with timestamps (only the oldest is read; the rest
    are kept for eviction).

    >>> # window 3 rows, pct 0.05: 100, 101, 106, 104 -> 0, 0, 1, 0 (106 / 100; 104 / 101)
    """
    cap = vals.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        t = ts[i]
        if np.isnan(p):
            out[i] = 0
            continue
        while ring_expired(tss, head, count, k, t, rows, span):
            ring_advance(head, count, k, cap)
        if count[k] == cap:
            return i
        pos = ring_slot(head, count, k, cap)
        vals[k, pos] = p
        tss[k, pos] = t
        count[k] += 1
        first = vals[k, head[k]]
        if not is_warm(count, k, rows, min_periods) or first == 0.0:
            out[i] = 0
            continue
        out[i] = 1 if abs(p / first - 1.0) > pct else 0
    return key.shape[0]


class StaleQuoteParams(Params):
    """stale_quote_detector: the largest allowed gap between a key's rows (a duration)."""

    max_age: Duration = PydanticField("5s", description="a quote older than this is stale, e.g. 5s")


@kernel("stale_quote_detector", params=StaleQuoteParams, inputs=(), outputs=("stale",),
        output_dtypes=(np.int8,),
        state=lambda p: [Field("seen", (), np.int8, 0), Field("last_ts", (), np.int64, 0)],
        args=lambda p: (parse_duration_us(p.max_age),),
        formula="1 when the gap to the key's previous row exceeds max_age")
@njit(nogil=True, cache=True)
def stale_quote_detector(key, ts, seen, last_ts, out, max_age_us):
    """Stale quote flag: 1 when t - t_prev > max_age, t_prev being the timestamp of the
    key's previous row; 0 on a key's first row.

    Reads only the row timestamps (int64 us). State: ``seen`` (0 before the key's first row)
    and ``last_ts``, the timestamp of the key's previous row.

    >>> # max_age 5s, rows at 0, 5, 10.5 s -> 0, 0, 1
    """
    for i in range(key.shape[0]):
        k = key[i]
        t = ts[i]
        if seen[k] and t - last_ts[k] > max_age_us:
            out[i] = 1
        else:
            out[i] = 0
        seen[k] = 1
        last_ts[k] = t
    return key.shape[0]
