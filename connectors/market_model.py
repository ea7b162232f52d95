"""The simulator's market model (``kind: simulator``), vectorised with numpy.

- **Arrivals.** Ticks arrive as a Poisson process at ``ticks_per_second`` (all symbols together);
  each tick belongs to one symbol, drawn by activity weights (BTC busiest, small coins quietest).
- **Prices.** Each symbol's log mid is ``log p0 + beta * M(t) + I(t)``: ``M`` is a common market
  factor and ``I`` the symbol's own noise, both Brownian motions sampled exactly at the symbol's
  arrival times. Factor loadings are set so that 1-second returns of different symbols correlate
  at roughly 0.3-0.7.
- **Regimes.** The market switches between a calm and a stressed regime (Poisson in time); the
  stressed regime has several times the volatility, wider spreads, and starts with a common price
  jump. Rare idiosyncratic jumps happen too. Both are large enough for CUSUM detectors to fire.
- **Quotes and trades.** Bid and ask are rounded to the symbol's tick size, 1 to a few ticks
  apart; sizes are lognormal. A share of ticks are trades at the bid or the ask: those set
  ``price`` and ``last_size`` and add to ``volume_24h``; quote-only ticks carry the last trade
  price and a null ``last_size``. ``sequence`` counts each symbol's ticks.

Output is deterministic for a seed and independent of the batch size asked for: rows are made in
fixed chunks of :data:`CHUNK_ROWS`, chunk ``k`` drawn from a generator seeded with ``(seed, k)``
with the per-symbol state carried from chunk to chunk, and then re-sliced to ``batch_rows``. So
the first ``n`` rows of a longer run equal a run of ``n`` rows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CHUNK_ROWS = 65_536
"""Rows generated per internal chunk; output does not depend on the batch size asked for."""

# name: (price level, activity weight, volatility per sqrt(second), share of variance from factor)
DEFAULT_SYMBOLS: dict[str, tuple[float, float, float, float]] = {
    "BTC-USD": (60_000.0, 0.20, 1.6e-4, 0.70),
    "ETH-USD": (3_000.0, 0.15, 2.0e-4, 0.65),
    "SOL-USD": (150.0, 0.09, 2.8e-4, 0.55),
    "XRP-USD": (0.60, 0.07, 2.6e-4, 0.50),
    "ADA-USD": (0.45, 0.05, 2.8e-4, 0.50),
    "DOGE-USD": (0.12, 0.07, 3.2e-4, 0.45),
    "AVAX-USD": (35.0, 0.05, 3.0e-4, 0.50),
    "LINK-USD": (15.0, 0.05, 2.9e-4, 0.50),
    "DOT-USD": (7.0, 0.04, 2.8e-4, 0.45),
    "MATIC-USD": (0.70, 0.04, 3.0e-4, 0.45),
    "LTC-USD": (80.0, 0.05, 2.5e-4, 0.50),
    "BCH-USD": (400.0, 0.05, 2.6e-4, 0.50),
    "UNI-USD": (8.0, 0.045, 3.0e-4, 0.45),
    "ATOM-USD": (9.0, 0.045, 3.0e-4, 0.45),
}

_FACTOR_VOL = 1.0e-4          # market factor volatility per sqrt(second), calm regime
_STRESS_VOL = 3.0             # volatility multiplier in the stressed regime
_CALM_MEAN_S = 1_800.0        # mean duration of a calm spell, seconds
_STRESS_MEAN_S = 300.0        # mean duration of a stressed spell, seconds
_REGIME_JUMP = (0.009, 0.016)  # common jump at the start of a stressed spell (uniform, random
                               # sign), scaled per symbol by beta / _BETA_REF
_BETA_REF = 1.6
_IDIO_JUMP_EVERY_S = 7_200.0  # mean time between a symbol's own jumps, seconds
_IDIO_JUMP_SD = 0.010         # standard deviation of an idiosyncratic jump (log)
_TRADE_SHARE = 0.4            # share of ticks that are trades
_SPREAD_EXTRA = 0.6           # mean extra ticks of spread beyond one (times the regime multiplier)


def symbol_names(symbols: int | list[str]) -> list[str]:
    """The symbol names a ``symbols`` setting stands for."""
    if isinstance(symbols, list):
        return list(symbols)
    names = list(DEFAULT_SYMBOLS)[:symbols]
    names.extend(f"SYM{i:05d}-USD" for i in range(len(names) + 1, symbols + 1))
    return names


@dataclass
class _Params:
    """Per-symbol constants of the model (arrays indexed by symbol code)."""

    names: list[str]
    logp0: np.ndarray
    tick_div: np.ndarray   # price = ticks / tick_div * tick_mul (exact for decimal tick sizes)
    tick_mul: np.ndarray
    tick: np.ndarray
    cdf: np.ndarray        # cumulative activity weights
    rate: np.ndarray       # ticks per second of each symbol
    beta: np.ndarray
    jump_load: np.ndarray   # how much of a common jump the symbol takes
    sigma_idio: np.ndarray
    size_scale: np.ndarray  # median quote size, in units of the asset
    trade_scale: np.ndarray  # median trade size
    volume0: np.ndarray


def _make_params(names: list[str], seed: int, tps: float) -> _Params:
    n = len(names)
    p0 = np.empty(n)
    weight = np.empty(n)
    vol = np.empty(n)
    share = np.empty(n)
    vol_jitter = np.empty(n)
    for i, name in enumerate(names):
        # each symbol's constants depend only on (seed, name), not on the other symbols
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 1])
        u = rng.random(5)
        if name in DEFAULT_SYMBOLS:
            p0[i], weight[i], vol[i], share[i] = DEFAULT_SYMBOLS[name]
        else:
            p0[i] = float(np.exp(np.log(0.1) + u[0] * (np.log(100.0) - np.log(0.1))))
            weight[i] = 0.03 + 0.04 * u[1]
            vol[i] = 2.5e-4 + 1.0e-4 * u[2]
            share[i] = 0.40 + 0.20 * u[3]
        vol_jitter[i] = u[4]
    # a tick is a power of ten about 1e-5 of the price: spreads are a fraction of a basis point
    exp10 = np.floor(np.log10(p0)).astype(np.int64) - 5
    tick_div = np.where(exp10 < 0, 10.0 ** np.maximum(-exp10, 0), 1.0)
    tick_mul = np.where(exp10 < 0, 1.0, 10.0 ** np.maximum(exp10, 0))
    w = weight / weight.sum()
    notional_quote = 8_000.0 * (0.75 + 0.5 * vol_jitter)
    return _Params(
        names=list(names), logp0=np.log(p0), tick_div=tick_div, tick_mul=tick_mul,
        tick=tick_mul / tick_div, cdf=np.cumsum(w), rate=w * tps,
        beta=np.sqrt(share) * vol / _FACTOR_VOL,
        jump_load=np.sqrt(share) * vol / _FACTOR_VOL / _BETA_REF,
        sigma_idio=np.sqrt(1.0 - share) * vol,
        size_scale=notional_quote / p0, trade_scale=notional_quote / 4.0 / p0,
        volume0=2.0e8 * w / p0)


@dataclass
class _State:
    """What carries from one chunk to the next."""

    t: float                 # seconds since start of the last generated tick
    factor: float            # market factor M
    jumps: float             # sum of the common jumps so far
    regime: int              # 0 calm, 1 stressed
    next_switch: float       # time of the next regime switch
    idio: np.ndarray         # per-symbol idiosyncratic component I
    last_t: np.ndarray       # per-symbol time of its last tick
    last_price: np.ndarray   # per-symbol last trade price
    volume: np.ndarray       # per-symbol volume_24h
    seq: np.ndarray          # per-symbol last sequence number


def _round_price(ticks: np.ndarray, div: np.ndarray, mul: np.ndarray) -> np.ndarray:
    return ticks / div * mul


def _initial_state(p: _Params, seed: int) -> _State:
    rng = np.random.default_rng([seed, 0xFFFF_FFFF])
    n = len(p.names)
    mid_ticks = np.floor(np.exp(p.logp0) * p.tick_div / p.tick_mul)
    return _State(t=0.0, factor=0.0, jumps=0.0, regime=0,
                  next_switch=float(rng.exponential(_CALM_MEAN_S)),
                  idio=np.zeros(n), last_t=np.zeros(n),
                  last_price=_round_price(mid_ticks, p.tick_div, p.tick_mul),
                  volume=p.volume0.copy(), seq=np.zeros(n, dtype=np.int64))


def _grouped_cumsum(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group; ``first[i]`` is the index where i's group starts
    (x sorted by group)."""
    cs = np.cumsum(x)
    return cs - (cs[first] - x[first])


class _Generator:
    """Produces the chunks in order; holds the state carried between them."""

    def __init__(self, cfg: Any):  # a SimulatorConfig: symbols, seed, start, ticks_per_second
        self.cfg = cfg
        self.names = symbol_names(cfg.symbols)
        self.params = _make_params(self.names, cfg.seed, cfg.ticks_per_second)
        self.state = _initial_state(self.params, cfg.seed)
        self.start_us = (cfg.start - _EPOCH) // timedelta(microseconds=1)
        self.code_dtype = np.int16 if len(self.names) < 32_000 else np.int32

    def chunk(self, k: int, n_out: int) -> dict[str, np.ndarray]:
        """Chunk ``k`` (always generated in full, then cut to ``n_out`` rows)."""
        p, st, cfg = self.params, self.state, self.cfg
        n = CHUNK_ROWS
        nsym = len(self.names)
        rng = np.random.default_rng([cfg.seed, k])
        # fixed-size draws first, always in the same order
        dt = rng.standard_exponential(n) / cfg.ticks_per_second
        u_sym = rng.random(n)
        z_factor = rng.standard_normal(n)
        z_idio = rng.standard_normal(n)
        u_jump = rng.random(n)
        z_jump = rng.standard_normal(n)
        u_trade = rng.random(n)
        u_side = rng.random(n)
        z_size = rng.standard_normal((3, n))
        u_spread = rng.random(n)

        t = st.t + np.cumsum(dt)
        t_end = float(t[-1])

        # regime switches in (st.t, t_end]
        rng_regime = np.random.default_rng([cfg.seed, k, 1])
        sw_t: list[float] = []
        regimes = [st.regime]
        jumps: list[float] = []
        while st.next_switch <= t_end:
            sw_t.append(st.next_switch)
            st.regime = 1 - st.regime
            regimes.append(st.regime)
            if st.regime == 1:
                lo, hi = _REGIME_JUMP
                size = lo + (hi - lo) * rng_regime.random()
                jumps.append(size if rng_regime.random() < 0.5 else -size)
            else:
                jumps.append(0.0)
            st.next_switch += float(rng_regime.exponential(
                _STRESS_MEAN_S if st.regime == 1 else _CALM_MEAN_S))
        if sw_t:
            regime_row = np.asarray(regimes)[np.searchsorted(np.asarray(sw_t), t, side="right")]
        else:
            regime_row = np.full(n, regimes[0])
        mult = np.where(regime_row == 1, _STRESS_VOL, 1.0)

        factor = st.factor + np.cumsum(_FACTOR_VOL * mult * np.sqrt(dt) * z_factor)
        d_jump = np.zeros(n)
        if sw_t:
            np.add.at(d_jump, np.searchsorted(t, np.asarray(sw_t), side="left"),
                      np.asarray(jumps))
        common_jumps = st.jumps + np.cumsum(d_jump)

        code = np.searchsorted(p.cdf, u_sym, side="right")
        np.minimum(code, nsym - 1, out=code)
        code = code.astype(self.code_dtype)

        # per-symbol processes, in symbol-sorted order (stable: time order within a symbol)
        order = np.argsort(code, kind="stable")
        cs = code[order].astype(np.intp)
        counts = np.bincount(cs, minlength=nsym)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        present = np.flatnonzero(counts)
        first = np.repeat(starts, counts)
        last_idx = starts[present] + counts[present] - 1

        ts_s = t[order]
        prev_t = np.empty(n)
        prev_t[1:] = ts_s[:-1]
        prev_t[starts[present]] = st.last_t[present]
        gap = ts_s - prev_t
        mult_s = mult[order]
        d_idio = p.sigma_idio[cs] * mult_s * np.sqrt(gap) * z_idio[order]
        jump_p = -np.expm1(-gap / _IDIO_JUMP_EVERY_S)
        d_idio += np.where(u_jump[order] < jump_p, _IDIO_JUMP_SD * z_jump[order], 0.0)
        d_idio[starts[present]] += st.idio[present]
        idio = _grouped_cumsum(d_idio, first)

        log_mid = (p.logp0[cs] + p.beta[cs] * factor[order]
                   + p.jump_load[cs] * common_jumps[order] + idio)
        div, mul = p.tick_div[cs], p.tick_mul[cs]
        center = np.exp(log_mid) * div / mul
        extra = np.floor(-np.log1p(-u_spread[order]) * (_SPREAD_EXTRA * mult_s))
        spread = 1.0 + extra
        bid_t = np.maximum(np.floor(center - spread / 2.0 + 0.5), 1.0)
        ask_t = bid_t + spread
        bid = _round_price(bid_t, div, mul)
        ask = _round_price(ask_t, div, mul)

        size_scale = p.size_scale[cs]
        bid_size = np.maximum(np.round(size_scale * np.exp(0.9 * z_size[0][order]), 8), 1e-8)
        ask_size = np.maximum(np.round(size_scale * np.exp(0.9 * z_size[1][order]), 8), 1e-8)
        trade_size = np.maximum(
            np.round(p.trade_scale[cs] * np.exp(1.1 * z_size[2][order]), 8), 1e-8)

        is_trade = u_trade[order] < _TRADE_SHARE
        # buyers lift the ask a little more often when the book leans to the bid
        lean = (bid_size - ask_size) / (bid_size + ask_size)
        buy = u_side[order] < 0.5 + 0.2 * lean
        trade_px = np.where(buy, ask, bid)
        # price: last trade price of the symbol, carried forward over quote-only ticks
        idx = np.where(is_trade, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        has_trade = idx >= first
        price = np.where(has_trade, trade_px[np.maximum(idx, 0)], st.last_price[cs])

        # carry added after the sum: exact at chunk edges, so volume never goes down
        volume = st.volume[cs] + _grouped_cumsum(np.where(is_trade, trade_size, 0.0), first)

        seq = np.arange(n, dtype=np.int64) - first + 1 + st.seq[cs]

        # carry the state to the next chunk (from the full chunk, whatever n_out is)
        st.t = t_end
        st.factor = float(factor[-1])
        st.jumps = float(common_jumps[-1])
        st.idio[present] = idio[last_idx]
        st.last_t[present] = ts_s[last_idx]
        st.last_price[present] = price[last_idx]
        st.volume[present] = volume[last_idx]
        st.seq[present] = seq[last_idx]

        # back to arrival order, cut to n_out
        inv = np.empty(n, dtype=np.intp)
        inv[order] = np.arange(n)
        sel = inv[:n_out]
        ts_us = self.start_us + np.floor(t[:n_out] * 1e6).astype(np.int64)
        return {
            "timestamp": ts_us, "code": code[:n_out], "price": price[sel], "best_bid": bid[sel],
            "best_ask": ask[sel], "best_bid_size": bid_size[sel], "best_ask_size": ask_size[sel],
            "last_size": trade_size[sel], "is_trade": is_trade[sel], "volume_24h": volume[sel],
            "sequence": seq[sel],
        }

