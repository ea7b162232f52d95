"""Liquidity and trade flow: VWAP, tick-rule signed volume, VPIN, Kyle's lambda, Amihud
illiquidity, Roll's spread, effective spread, Corwin-Schultz spread and lead-lag
cross-correlation."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import (
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
from tickflow.kernels.statistics import PosInt, min_row_window, pair_state, pair_walk
from tickflow.kernels.volatility import MEAN_OF_VALUES, rolling_sum_walk
from tickflow.kernels.window import RECOMPUTE, is_warm, ring_advance, ring_at, ring_expired, ring_slot


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


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

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the price-impact "
                                               "regression")

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
    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the |return| / volume "
                                               "average")


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
    n = key.shape[0]
    ratio = np.empty(n)  # NaN marks a row that changes nothing
    for i in range(n):
        dv = price[i] * size[i]
        v = r[i]
        if np.isnan(v) or np.isnan(dv) or dv == 0.0:
            ratio[i] = np.nan
        else:
            ratio[i] = abs(v) / abs(dv)
    return rolling_sum_walk(key, ts, ratio, ratio, vals, tss, head, count, shift, s1, s2, since,
                            last, run, out, rows, span, min_periods, MEAN_OF_VALUES)


# --------------------------------------------------------------------------- Roll


class RollSpreadParams(WindowParams):
    """roll_spread: a (T) window of (d_t, d_{t-1}) pairs; row windows need >= 2 pairs."""

    window: Window = PydanticField(100,
                                   description="rows (or a duration) of the return autocovariance")

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
    # Pass 1 forms the pairs on copies of the last price / change (a ring-full retry must
    # start from the state before row ``done``); pass 2 is the shared pair window; the
    # copies are kept when every row was taken, else the state is replayed up to ``done``.
    n = key.shape[0]
    pp = prev_p.copy()
    pd = prev_d.copy()
    dx = np.empty(n)
    dy = np.empty(n)
    _roll_pairs(key, price, pp, pd, dx, dy, n)
    done = pair_walk(key, ts, dx, dy, xs, ys, tss, head, count, x_shift, x_s1, x_s2, x_since,
                     x_last, x_run, y_shift, y_s1, y_s2, y_since, y_last, y_run, sxy, out,
                     rows, span, min_periods, 2)
    if done == n:
        prev_p[:] = pp
        prev_d[:] = pd
    else:
        _roll_pairs(key, price, prev_p, prev_d, dx, dy, done)
    return done


@njit(nogil=True, cache=True)
def _roll_pairs(key, price, prev_p, prev_d, dx, dy, stop):
    """(d_t, d_{t-1}) of rows [0, stop) into dx, dy (NaN where a row has no pair), updating
    the last price and price change per key."""
    for i in range(stop):
        k = key[i]
        p = price[i]
        dx[i] = np.nan
        dy[i] = np.nan
        if np.isnan(p):
            continue
        if np.isnan(prev_p[k]):
            prev_p[k] = p
            continue
        d = p - prev_p[k]
        if not np.isnan(prev_d[k]):
            dx[i] = d
            dy[i] = prev_d[k]
        prev_d[k] = d
        prev_p[k] = p


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
CS_BETA = (np.sqrt(2.0) - 1.0) / CS_DEN  # (sqrt(2 beta) - sqrt(beta)) / D = CS_BETA sqrt(beta)
CS_GAMMA = 1.0 / np.sqrt(CS_DEN)  # sqrt(gamma / D) = CS_GAMMA |g|, gamma = g^2


@kernel("corwin_schultz_spread", params=NoParams, inputs=("high", "low"),
        outputs=("cs_spread",),
        state=lambda p: [Field("prev_h"), Field("prev_l"), Field("prev_a")],
        formula="Corwin-Schultz (2012) high-low spread from two consecutive bars")
@njit(nogil=True, cache=True)
def corwin_schultz_spread(key, ts, high, low, prev_h, prev_l, prev_a, out):
    """Corwin & Schultz (2012) spread from two consecutive bars (valid rows) of the key.

    beta = ln(H_t / L_t)^2 + ln(H_{t-1} / L_{t-1})^2; gamma = ln(max(H_t, H_{t-1}) /
    min(L_t, L_{t-1}))^2; alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt(2))
    - sqrt(gamma / (3 - 2 sqrt(2))); S = 2 (e^alpha - 1) / (1 + e^alpha), negative S set to 0.

    Warm-up: NaN on the key's first valid bar. A bar with high or low NaN, or not positive,
    outputs NaN and changes nothing.

    State: the previous bar's high, low and ln(high / low) per key. (Speed: the constant
    factors are folded, sqrt(2 beta) - sqrt(beta) = (sqrt 2 - 1) sqrt(beta) and
    sqrt(gamma / D) = |ln(...)| / sqrt(D), so a bar costs two logs, one root and one exp.)

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
        a0 = prev_a[k]
        a1 = np.log(h / lo)
        prev_h[k] = h
        prev_l[k] = lo
        prev_a[k] = a1
        if np.isnan(ph):
            out[i] = np.nan
            continue
        beta = a1 * a1 + a0 * a0
        g = np.log(max(h, ph) / min(lo, pl))
        alpha = CS_BETA * np.sqrt(beta) - CS_GAMMA * abs(g)
        e = np.exp(alpha)
        s = 2.0 * (e - 1.0) / (1.0 + e)
        out[i] = s if s > 0.0 else 0.0
    return key.shape[0]


# --------------------------------------------------------------------------- lead-lag


class XcorrParams(Params):
    """xcorr_leadlag: lags -max_lag..max_lag (max_lag >= 0) over a row window of >= 2 pairs."""

    max_lag: int = PydanticField(10, ge=0, description="largest lead/lag tested, in rows")
    window: int = PydanticField(100, ge=2, description="rows in the correlation window")

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("max_lag", "window"):
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be an integer, found {data[name]!r}")
        return data


XCORR_REBASE = 4
"""xcorr_leadlag rebuilds its prefix sums every this many ring-sizes of rows."""


def _xcorr_state(p: XcorrParams) -> list[Field]:
    cap = p.window + p.max_lag + 1
    return [*(Field(n, (cap,)) for n in ("xs", "ys")),
            *(Field(n, (cap,), np.float64, 0.0) for n in ("px", "pxx", "py", "pyy", "rx", "ry")),
            Field("pq", (cap, 2 * p.max_lag + 1), np.float64, 0.0),
            Field("seq", (), np.int64, 0), Field("since", (), np.int64, 0),
            Field("x_shift", (), np.float64, 0.0), Field("y_shift", (), np.float64, 0.0)]


@kernel("xcorr_leadlag", params=XcorrParams, inputs=("x", "y"),
        outputs=("lead_lag", "lead_lag_corr"), state=_xcorr_state,
        args=lambda p: (p.max_lag, p.window),
        formula="the lag L in [-max_lag, max_lag] maximising |corr(x_t, y_{t-L})| over the window")
@njit(nogil=True, cache=True)
def xcorr_leadlag(key, ts, x, y, xs, ys, px, pxx, py, pyy, rx, ry, pq, seq, since, x_shift,
                  y_shift, out_lag, out_corr, max_lag, window):
    """Lead-lag by cross-correlation: the lag L in [-max_lag, max_lag] maximising
    |corr(x_t, y_{t-L})| over the last ``window`` pairs, and that (signed) correlation.

    For L >= 0 the pairs are (x_s, y_{s-L}) for the last ``window`` x values; for L < 0 they
    are (x_{s+L}, y_s) for the last ``window`` y values (no look-ahead). L > 0: y leads x.
    Rows where x and y are both valid form the series. Ties go to the smallest |L|, then to
    the positive L. A lag whose window has a constant side is skipped.

    Warm-up: NaN in both until the key holds ``window + max_lag`` valid pairs; NaN when every
    lag is skipped. A row with x or y NaN outputs NaN and changes nothing.

    State: rings of the last ``window + max_lag + 1`` pairs (slot = row number mod size),
    indexed by the key's row number ``seq``: the raw x and y, prefix sums of x - x_shift,
    its square, y - y_shift and its square, run lengths of equal x and of equal y, and per
    lag the prefix sum of the shifted products, each term filed under the later row of its
    pair. Every window sum is then a difference of two prefix values: O(max_lag) per row.
    Every 4 ring-sizes of rows the shifts move to the ring's means and the prefix sums are
    rebuilt from the raw values (their magnitude stays bounded): O(max_lag) amortised.
    """
    cap = xs.shape[1]
    total = window + max_lag
    nl = 2 * max_lag + 1
    fw = float(window)
    iw = 1.0 / fw
    wsx = np.empty(max_lag + 1)  # per-row scratch: window stats by end offset
    wvx = np.empty(max_lag + 1)
    wsy = np.empty(max_lag + 1)
    wvy = np.empty(max_lag + 1)
    for i in range(key.shape[0]):
        k = key[i]
        a = x[i]
        b = y[i]
        out_lag[i] = np.nan
        out_corr[i] = np.nan
        if np.isnan(a) or np.isnan(b):
            continue
        s = seq[k]
        j = s % cap
        jp = j - 1 if j > 0 else cap - 1
        if s == 0:
            x_shift[k] = a
            y_shift[k] = b
        xsh = x_shift[k]
        ysh = y_shift[k]
        xs[k, j] = a
        ys[k, j] = b
        dx = a - xsh
        dy = b - ysh
        if s > 0:
            rx[k, j] = rx[k, jp] + 1.0 if xs[k, jp] == a else 1.0
            ry[k, j] = ry[k, jp] + 1.0 if ys[k, jp] == b else 1.0
            px[k, j] = px[k, jp] + dx
            pxx[k, j] = pxx[k, jp] + dx * dx
            py[k, j] = py[k, jp] + dy
            pyy[k, j] = pyy[k, jp] + dy * dy
        else:
            rx[k, j] = 1.0
            ry[k, j] = 1.0
            px[k, j] = dx
            pxx[k, j] = dx * dx
            py[k, j] = dy
            pyy[k, j] = dy * dy
        if s >= max_lag and s > 0:  # every partner row exists: two branch-free loops
            for d in range(max_lag + 1):  # lag d >= 0: x_s (y_{s-d})
                jd = j - d if j >= d else j - d + cap
                pq[k, j, max_lag + d] = pq[k, jp, max_lag + d] + dx * (ys[k, jd] - ysh)
            for d in range(1, max_lag + 1):  # lag -d: (x_{s-d}) y_s
                jd = j - d if j >= d else j - d + cap
                pq[k, j, max_lag - d] = pq[k, jp, max_lag - d] + (xs[k, jd] - xsh) * dy
        else:
            for li in range(nl):
                lag = li - max_lag
                d = lag if lag >= 0 else -lag
                term = 0.0
                if s >= d:
                    jd = j - d if j >= d else j - d + cap
                    term = dx * (ys[k, jd] - ysh) if lag >= 0 else (xs[k, jd] - xsh) * dy
                pq[k, j, li] = (pq[k, jp, li] if s > 0 else 0.0) + term
        s += 1
        seq[k] = s
        since[k] += 1
        if since[k] >= XCORR_REBASE * cap:
            _xcorr_rebase(xs, ys, px, pxx, py, pyy, pq, x_shift, y_shift, k, s, max_lag)
            since[k] = 0
        if s < total:
            continue
        s -= 1  # the row number of this pair
        # the max_lag + 1 windows of x (and of y) ending at s - d: sum and centred sum of
        # squares, or -1 when constant (an exactly constant side skips the lag)
        for d in range(max_lag + 1):
            je = j - d if j >= d else j - d + cap
            jb = je - window if je >= window else je - window + cap
            early = s - d - window < 0
            sx = px[k, je] - (0.0 if early else px[k, jb])
            sxx = pxx[k, je] - (0.0 if early else pxx[k, jb])
            wsx[d] = sx
            wvx[d] = -1.0 if rx[k, je] >= fw else sxx - sx * sx * iw
            sy = py[k, je] - (0.0 if early else py[k, jb])
            syy = pyy[k, je] - (0.0 if early else pyy[k, jb])
            wsy[d] = sy
            wvy[d] = -1.0 if ry[k, je] >= fw else syy - sy * sy * iw
        jb = j - window if j >= window else j - window + cap
        early = s - window < 0
        best_num = -1.0
        best_den = 1.0
        best_cov = 0.0
        best_lag = 0
        for step in range(nl):
            lag = (step + 1) // 2
            if step % 2 == 0 and step > 0:
                lag = -lag
            dxe = -lag if lag < 0 else 0  # x window ends at s - dxe, y window at s - dye
            dye = lag if lag > 0 else 0
            vx = wvx[dxe]
            vy = wvy[dye]
            if not (vx > 0.0 and vy > 0.0):
                continue
            li = lag + max_lag
            sxy = pq[k, j, li] - (0.0 if early else pq[k, jb, li])
            # compare r^2 = num / den, num = cov^2 clamped at den (as r is clamped at 1),
            # by cross-multiplying (dens > 0); the division and root are taken once
            cov = sxy - wsx[dxe] * wsy[dye] * iw
            den = vx * vy
            num = cov * cov
            if num > den:
                num = den
            if num * best_den > best_num * den:
                best_num = num
                best_den = den
                best_cov = cov
                best_lag = lag
        if best_num >= 0.0:
            r = best_cov / np.sqrt(best_den)
            if r > 1.0:
                r = 1.0
            elif r < -1.0:
                r = -1.0
            out_lag[i] = best_lag
            out_corr[i] = r
    return key.shape[0]


@njit(nogil=True)
def _xcorr_rebase(xs, ys, px, pxx, py, pyy, pq, x_shift, y_shift, k, s, max_lag):
    """Move the shifts to the ring's means and rebuild every prefix sum from the raw values
    of the ``min(s, cap)`` pairs held (rows s - n .. s - 1); a product whose other row has
    left the ring counts 0 (no window that is read reaches it)."""
    cap = xs.shape[1]
    n = s if s < cap else cap
    j0 = (s - n) % cap  # slot of the oldest row held
    tx = 0.0
    ty = 0.0
    jv = j0
    for _ in range(n):
        tx += xs[k, jv]
        ty += ys[k, jv]
        jv = jv + 1 if jv + 1 < cap else 0
    xsh = tx / n
    ysh = ty / n
    x_shift[k] = xsh
    y_shift[k] = ysh
    ax = axx = ay = ayy = 0.0
    nl = 2 * max_lag + 1
    jv = j0
    for v in range(n):  # v: rows since the oldest held
        dx = xs[k, jv] - xsh
        dy = ys[k, jv] - ysh
        ax += dx
        axx += dx * dx
        ay += dy
        ayy += dy * dy
        px[k, jv] = ax
        pxx[k, jv] = axx
        py[k, jv] = ay
        pyy[k, jv] = ayy
        jp = jv - 1 if jv > 0 else cap - 1
        for li in range(nl):
            lag = li - max_lag
            d = lag if lag >= 0 else -lag
            term = 0.0
            if v >= d:
                jd = jv - d if jv >= d else jv - d + cap
                term = dx * (ys[k, jd] - ysh) if lag >= 0 else (xs[k, jd] - xsh) * dy
            pq[k, jv, li] = (pq[k, jp, li] if v > 0 else 0.0) + term
        jv = jv + 1 if jv + 1 < cap else 0
