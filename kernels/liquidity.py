"""Liquidity and trade flow: VWAP, tick-rule signed volume, VPIN, Kyle's lambda, Amihud
illiquidity, Roll's spread, effective spread, Corwin-Schultz spread and lead-lag
cross-correlation."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from kernels.base import (
    Field,
    NoParams,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from kernels.statistics import PosInt, min_row_window, pair_cov, pair_push, pair_state, pair_walk
from kernels.volatility import window_sum_push
from kernels.window import RECOMPUTE, is_warm, ring_advance, ring_at, ring_expired, ring_slot


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


# --------------------------------------------------------------------------- VWAP


class VwapParams(WindowParams):
    """vwap: no window (since the key's first trade), a row count or a duration."""

    window: Window | None = None


def _vwap_state(p: VwapParams) -> list[Field]:
    cap = 1 if p.window is None else initial_capacity(p.window)
    return [*ring_fields(cap, values=("pv", "vol")), Field("spv", (), np.float64, 0.0),
            Field("svol", (), np.float64, 0.0), Field("vsince", (), np.int64, 0)]


def _vwap_args(p: VwapParams) -> tuple[int, int, int, bool]:
    if p.window is None:
        return 0, 0, p.min_periods, True
    rows, span = window_args(p.window)
    return rows, span, p.min_periods, False


@kernel("vwap", params=VwapParams, inputs=("price", "last_size"), outputs=("vwap",),
        state=_vwap_state, args=_vwap_args, time_window=True,
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


@kernel("signed_volume", params=NoParams, inputs=("price", "last_size"),
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

    bucket_volume: float = PydanticField(gt=0.0)
    buckets: PosInt = 50


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


@kernel("vpin", params=VpinParams, inputs=("price", "last_size"), outputs=("vpin",),
        state=_vpin_state, args=lambda p: (p.bucket_volume, p.buckets),
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


# --------------------------------------------------------------------------- Kyle, Amihud


class KyleLambdaParams(WindowParams):
    """kyle_lambda: a (T) window; row windows need >= 2 rows."""

    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> KyleLambdaParams:
        min_row_window(self, 2)
        return self


@kernel("kyle_lambda", params=KyleLambdaParams, inputs=("log_return", "signed_volume"),
        outputs=("kyle_lambda",), state=pair_state, args=_window_args, time_window=True,
        formula="OLS slope of r on signed volume over the window")
@njit(nogil=True, cache=True)
def kyle_lambda(key, ts, r, sv, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since, x_last,
                x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out, rows, span,
                min_periods):
    """Kyle's lambda (price impact): the OLS slope (with intercept) of the log return on the
    signed volume over the window, cov(r, v) / var(v).

    A row is used when both inputs are valid; otherwise it outputs NaN and changes nothing.
    Warm-up: NaN until the window holds ``window`` rows (rows) or ``min_periods`` (time).
    NaN when the signed volume is constant over the window.

    State: as ``rolling_beta``: a ring of (r, v) with timestamps and shifted sums.

    >>> # r = 1e-4 * v -> 1e-4 once warm
    """
    return pair_walk(key, ts, r, sv, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 1)


class AmihudParams(WindowParams):
    window: Window = 100


def _amihud_state(p: AmihudParams) -> list[Field]:
    return ring_fields(initial_capacity(p.window)) + moment_fields()


@kernel("amihud_illiquidity", params=AmihudParams, inputs=("log_return", "price", "last_size"),
        outputs=("amihud",), state=_amihud_state, args=_window_args, time_window=True,
        formula="mean over the window of |r| / (price * size)")
@njit(nogil=True, cache=True)
def amihud_illiquidity(key, ts, r, price, size, vals, tss, head, count, shift, s1, s2, since,
                       last, run, out, rows, span, min_periods):
    """Amihud (2002) illiquidity: the mean over the window of |r| / (price * size).

    A row with any input NaN, or with price * size = 0 (its ratio would divide by zero),
    outputs NaN and changes nothing. Warm-up: NaN until the window holds ``window`` values
    (rows) or ``min_periods`` (time).

    State: a ring of the ratios with timestamps and shifted running sums.

    >>> # (r, p, size) = (0.01, 100, 1), (-0.02, 100, 2) with window 2 -> NaN, 1e-4
    """
    for i in range(key.shape[0]):
        k = key[i]
        dv = price[i] * size[i]
        v = r[i]
        if np.isnan(v) or np.isnan(dv) or dv == 0.0:
            out[i] = np.nan
            continue
        ok, s = window_sum_push(k, ts[i], abs(v) / abs(dv), vals, tss, head, count, shift, s1,
                                s2, since, last, run, rows, span, min_periods)
        if not ok:
            return i
        out[i] = s / count[k]
    return key.shape[0]


# --------------------------------------------------------------------------- Roll


class RollSpreadParams(WindowParams):
    """roll_spread: a (T) window of (d_t, d_{t-1}) pairs; row windows need >= 2 pairs."""

    window: Window = 100

    @model_validator(mode="after")
    def _enough_rows(self) -> RollSpreadParams:
        min_row_window(self, 2)
        return self


def _roll_state(p: RollSpreadParams) -> list[Field]:
    return [Field("prev_p"), Field("prev_d"), *pair_state(p)]


@kernel("roll_spread", params=RollSpreadParams, inputs=("price",), outputs=("roll_spread",),
        state=_roll_state, args=_window_args, time_window=True,
        formula="c = cov(d_t, d_{t-1}) over the window, d_t = p_t - p_{t-1}; 2 sqrt(-c) if c < 0")
@njit(nogil=True, cache=True)
def roll_spread(key, ts, price, prev_p, prev_d, xs, ys, tss, head, count, x_shift, x_s1, x_s2,
                x_since, x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                rows, span, min_periods):
    """Roll (1984) effective spread: with d_t = p_t - p_{t-1} (consecutive valid prices of the
    key), c = sample cov(d_t, d_{t-1}) over the window; 2 sqrt(-c) if c < 0, else 0.

    A pair (d_t, d_{t-1}) exists from the key's third valid price on and belongs to the row
    (and timestamp) of p_t. Warm-up: NaN until the window holds ``window`` pairs (rows) or
    ``min_periods`` pairs (time). A NaN price outputs NaN and changes nothing.

    State: the last price and price change, and a ring of pairs with shifted sums as in
    ``rolling_corr``.

    >>> # p = 10, 11, 10, 11, 10 with window 3 -> NaN x4, then 2 sqrt(4 / 3) (c = -4 / 3)
    """
    for i in range(key.shape[0]):
        k = key[i]
        p = price[i]
        if np.isnan(p):
            out[i] = np.nan
            continue
        if np.isnan(prev_p[k]):
            prev_p[k] = p
            out[i] = np.nan
            continue
        d = p - prev_p[k]
        if np.isnan(prev_d[k]):
            prev_d[k] = d
            prev_p[k] = p
            out[i] = np.nan
            continue
        if not pair_push(k, ts[i], d, prev_d[k], xs, ys, tss, head, count, x_shift, x_s1, x_s2,
                         x_since, x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run,
                         sxy, rows, span):
            return i
        prev_d[k] = d
        prev_p[k] = p
        n = count[k]
        c = pair_cov(x_s1, y_s1, sxy, k, n)
        if not is_warm(count, k, rows, min_periods) or np.isnan(c):
            out[i] = np.nan
        elif c < 0.0:
            out[i] = 2.0 * np.sqrt(-c)
        else:
            out[i] = 0.0
    return key.shape[0]


# --------------------------------------------------------------------------- spreads


@kernel("effective_spread", params=NoParams, inputs=("price", "midprice"),
        outputs=("effective_spread",), formula="2 |price - mid| / mid * 10,000 (bps)")
@njit(nogil=True, cache=True)
def effective_spread(key, ts, price, mid, out):
    """Effective spread in basis points: 2 |price - mid| / mid * 10,000.

    Warm-up: none. NaN when either input is NaN or the midprice is 0. State: none.

    >>> # price 100.5, mid 100 -> 100.0
    """
    for i in range(key.shape[0]):
        m = mid[i]
        if m == 0.0 or np.isnan(m) or np.isnan(price[i]):
            out[i] = np.nan
        else:
            out[i] = 2.0 * abs(price[i] - m) / m * 10_000.0
    return key.shape[0]


CS_DEN = 3.0 - 2.0 * np.sqrt(2.0)


@kernel("corwin_schultz_spread", params=NoParams, inputs=("high", "low"),
        outputs=("cs_spread",), state=lambda p: [Field("prev_h"), Field("prev_l")],
        formula="Corwin-Schultz (2012) high-low spread from two consecutive bars")
@njit(nogil=True, cache=True)
def corwin_schultz_spread(key, ts, high, low, prev_h, prev_l, out):
    """Corwin & Schultz (2012) spread from two consecutive bars (valid rows) of the key.

    beta = ln(H_t / L_t)^2 + ln(H_{t-1} / L_{t-1})^2; gamma = ln(max(H_t, H_{t-1}) /
    min(L_t, L_{t-1}))^2; alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt(2))
    - sqrt(gamma / (3 - 2 sqrt(2))); S = 2 (e^alpha - 1) / (1 + e^alpha), negative S set to 0.

    Warm-up: NaN on the key's first valid bar. A bar with high or low NaN, or not positive,
    outputs NaN and changes nothing.

    State: the previous bar's high and low per key.

    >>> # bars (101, 99), (101, 99) -> NaN, 0.01999... (alpha = ln(101 / 99))
    """
    for i in range(key.shape[0]):
        k = key[i]
        h = high[i]
        lo = low[i]
        if np.isnan(h) or np.isnan(lo) or h <= 0.0 or lo <= 0.0:
            out[i] = np.nan
            continue
        ph = prev_h[k]
        pl = prev_l[k]
        prev_h[k] = h
        prev_l[k] = lo
        if np.isnan(ph):
            out[i] = np.nan
            continue
        a1 = np.log(h / lo)
        a0 = np.log(ph / pl)
        beta = a1 * a1 + a0 * a0
        g = np.log(max(h, ph) / min(lo, pl))
        gamma = g * g
        alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / CS_DEN - np.sqrt(gamma / CS_DEN)
        e = np.exp(alpha)
        s = 2.0 * (e - 1.0) / (1.0 + e)
        out[i] = s if s > 0.0 else 0.0
    return key.shape[0]


# --------------------------------------------------------------------------- lead-lag


class XcorrParams(Params):
    """xcorr_leadlag: lags -max_lag..max_lag (max_lag >= 0) over a row window of >= 2 pairs."""

    max_lag: int = PydanticField(10, ge=0)
    window: int = PydanticField(100, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("max_lag", "window"):
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be an integer, found {data[name]!r}")
        return data


def _xcorr_state(p: XcorrParams) -> list[Field]:
    return ring_fields(p.window + p.max_lag, values=("xs", "ys"), with_ts=False)


@njit(inline="always", nogil=True)
def _lag_corr(xs, ys, head, k, cap, x0, y0, w):
    """Pearson correlation of x[x0 + j] and y[y0 + j], j < w (ring positions, two-pass)."""
    mx = 0.0
    my = 0.0
    x_first = xs[k, (head[k] + x0) % cap]
    y_first = ys[k, (head[k] + y0) % cap]
    x_const = True
    y_const = True
    for j in range(w):
        a = xs[k, (head[k] + x0 + j) % cap]
        b = ys[k, (head[k] + y0 + j) % cap]
        mx += a
        my += b
        x_const = x_const and a == x_first
        y_const = y_const and b == y_first
    if x_const or y_const:  # exactly constant: no correlation (a rounded mean would fake one)
        return np.nan
    mx /= w
    my /= w
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    for j in range(w):
        a = xs[k, (head[k] + x0 + j) % cap] - mx
        b = ys[k, (head[k] + y0 + j) % cap] - my
        sxx += a * a
        syy += b * b
        sxy += a * b
    if not (sxx > 0.0 and syy > 0.0):
        return np.nan
    r = sxy / np.sqrt(sxx * syy)
    if r > 1.0:
        return 1.0
    if r < -1.0:
        return -1.0
    return r


@kernel("xcorr_leadlag", params=XcorrParams, inputs=("x", "y"),
        outputs=("lead_lag", "lead_lag_corr"), state=_xcorr_state,
        args=lambda p: (p.max_lag, p.window),
        formula="the lag L in [-max_lag, max_lag] maximising |corr(x_t, y_{t-L})| over the window")
@njit(nogil=True, cache=True)
def xcorr_leadlag(key, ts, x, y, xs, ys, head, count, out_lag, out_corr, max_lag, window):
    """Lead-lag by cross-correlation: the lag L in [-max_lag, max_lag] maximising
    |corr(x_t, y_{t-L})| over the last ``window`` pairs, and that (signed) correlation.

    For L >= 0 the pairs are (x_s, y_{s-L}) for the last ``window`` x values; for L < 0 they
    are (x_{s+L}, y_s) for the last ``window`` y values (no look-ahead). L > 0: y leads x.
    Rows where x and y are both valid form the series. Ties go to the smallest |L|, then to
    the positive L. A lag whose window has a constant side is skipped.

    Warm-up: NaN in both until the key holds ``window + max_lag`` valid pairs; NaN when every
    lag is skipped. A row with x or y NaN outputs NaN and changes nothing.

    State: a ring of the last ``window + max_lag`` (x, y) pairs.

    >>> # y_t = x_{t+2} (y leads x by 2) -> lead_lag 2.0, lead_lag_corr 1.0
    """
    cap = xs.shape[1]
    total = window + max_lag
    for i in range(key.shape[0]):
        k = key[i]
        a = x[i]
        b = y[i]
        out_lag[i] = np.nan
        out_corr[i] = np.nan
        if np.isnan(a) or np.isnan(b):
            continue
        if count[k] >= total:
            ring_advance(head, count, k, cap)
        pos = ring_slot(head, count, k, cap)
        xs[k, pos] = a
        ys[k, pos] = b
        count[k] += 1
        if count[k] < total:
            continue
        best = np.nan
        best_lag = 0
        for step in range(2 * max_lag + 1):
            lag = (step + 1) // 2
            if step % 2 == 0 and step > 0:
                lag = -lag
            if lag >= 0:
                r = _lag_corr(xs, ys, head, k, cap, max_lag, max_lag - lag, window)
            else:
                r = _lag_corr(xs, ys, head, k, cap, max_lag + lag, max_lag, window)
            if np.isnan(r):
                continue
            if np.isnan(best) or abs(r) > abs(best):
                best = r
                best_lag = lag
        if not np.isnan(best):
            out_lag[i] = best_lag
            out_corr[i] = best
    return key.shape[0]
