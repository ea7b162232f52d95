"""The execution simulator: per-row signal codes to fills, trades and an equity curve.

One numba loop walks the ticks in time order (all symbols interleaved) and keeps positions,
pending orders and marks per symbol. The contract that makes results trustworthy:

* a signal on tick ``t`` of a symbol is an order that reaches the market at ``t + latency`` and
  fills on the first tick **of that symbol** strictly after the signal's tick and at or after
  ``t + latency``; never on the signal's own tick, never on another symbol's tick;
* market orders buy at the ask and sell at the bid (``price`` +/- ``slippage_bps`` on ticks
  without quotes) and pay the taker fee; limit orders rest at the touch (buy at the bid, sell at
  the ask) from the tick they reach the market and fill at their price, with the maker fee, on
  a later tick whose opposite quote reaches them; after ``limit_timeout`` an entry is cancelled
  and an exit is sent as a market order;
* stop-loss, take-profit and max holding time are checked on every tick of the symbol at the
  executable quote (bid for longs, ask for shorts) and exit by market order on the next tick;
* positions are marked at the mid (or ``price``); open positions are closed at the end at the
  last quotes (reason ``end``).

Equity is sampled at the end of every ``grid`` bucket (calendar time), for the metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from tickflow.engine.backtest.plan import ENTRY_LONG, ENTRY_SHORT, EXIT_LONG, EXIT_SHORT
from tickflow.engine.backtest.spec import StrategySpec, duration_us

YEAR_S = 365.0 * 86_400.0  # crypto trades every day: annualise by calendar time

REASONS = ("signal", "stop_loss", "take_profit", "max_holding", "end", "reverse")
R_SIGNAL, R_STOP, R_TAKE, R_MAXHOLD, R_END, R_REVERSE = range(6)

# trade log columns (float64: microsecond timestamps of this era are exact below 2**53)
TRADE_COLUMNS = ("symbol", "side", "entry_signal_ts", "entry_ts", "entry_price",
                 "exit_signal_ts", "exit_ts", "exit_price", "quantity", "fees", "pnl", "reason")
(T_SYM, T_SIDE, T_ESIG, T_ETS, T_EPX, T_XSIG, T_XTS, T_XPX, T_QTY, T_FEES, T_PNL,
 T_REASON) = range(12)

# config vector
(C_LATENCY, C_LIMIT, C_TIMEOUT, C_TAKER, C_MAKER, C_SLIP, C_SL, C_TP, C_MAXHOLD, C_SIZING,
 C_NOTIONAL, C_FRACTION, C_TVOL, C_MAXLEV, C_CASH, C_PER_SYMBOL, C_MAXPOS, C_GRID) = range(18)
SIZING_CODES = {"fixed_notional": 0, "fixed_fraction": 1, "vol_target": 2}

# per-symbol float state
(F_QTY, F_EPX, F_EFEE, F_REAL, F_UNREAL, F_MARK, F_BID, F_ASK, F_PRICE, F_PVOL, F_PLIMIT,
 F_FEES, F_TURNOVER) = range(13)
# per-symbol int state
(I_ETS, I_ESIG, I_FIRST, I_COUNT, I_SINCE, I_TIMEIN, I_PON, I_PTARGET, I_PROW, I_PTS,
 I_PSIG, I_PREASON, I_PPOSTED, I_PPOSTTS) = range(14)
# global state
G_REAL, G_UNREAL = range(2)
(GI_OPEN, GI_ANY_SINCE, GI_ANY_TIME, GI_TRADES, GI_REJECTED, GI_SKIPPED, GI_CANCELLED,
 GI_UNFILLED, GI_UNPRICED) = range(9)
COUNTER_NAMES = ("open_positions", "_", "time_in_market_us", "trade_count",
                 "entries_rejected_max_positions", "entries_skipped_sizing",
                 "limit_orders_cancelled", "orders_unfilled_at_end", "ticks_without_price")


@njit(nogil=True, cache=True)
def _equity(st, g, cfg, s, alloc):
    if cfg[C_PER_SYMBOL] > 0.0:
        return alloc + st[s, F_REAL] + st[s, F_UNREAL]
    return cfg[C_CASH] + g[G_REAL] + g[G_UNREAL]


@njit(nogil=True, cache=True)
def _transition(s, t, px, fee_rate, target, sig_ts, reason, vol_sig, st, ist, g, gi, trades,
                cfg, alloc):
    """Move symbol ``s`` to ``target`` (-1, 0, 1) at ``px``: close, then maybe open."""
    q = st[s, F_QTY]
    if q != 0.0:
        fee = abs(q) * px * fee_rate
        gross = q * (px - st[s, F_EPX])
        g[G_REAL] += gross - fee
        st[s, F_REAL] += gross - fee
        g[G_UNREAL] -= st[s, F_UNREAL]
        st[s, F_UNREAL] = 0.0
        st[s, F_FEES] += fee
        st[s, F_TURNOVER] += abs(q) * px
        k = gi[GI_TRADES]
        trades[k, T_SYM] = s
        trades[k, T_SIDE] = 1.0 if q > 0 else -1.0
        trades[k, T_ESIG] = ist[s, I_ESIG]
        trades[k, T_ETS] = ist[s, I_ETS]
        trades[k, T_EPX] = st[s, F_EPX]
        trades[k, T_XSIG] = sig_ts
        trades[k, T_XTS] = t
        trades[k, T_XPX] = px
        trades[k, T_QTY] = abs(q)
        trades[k, T_FEES] = st[s, F_EFEE] + fee
        trades[k, T_PNL] = gross - fee - st[s, F_EFEE]
        trades[k, T_REASON] = R_REVERSE if (target != 0 and reason == R_SIGNAL) else reason
        gi[GI_TRADES] = k + 1
        st[s, F_QTY] = 0.0
        ist[s, I_TIMEIN] += t - ist[s, I_SINCE]
        gi[GI_OPEN] -= 1
        if gi[GI_OPEN] == 0:
            gi[GI_ANY_TIME] += t - gi[GI_ANY_SINCE]
    if target == 0:
        return
    if cfg[C_MAXPOS] > 0.0 and gi[GI_OPEN] >= cfg[C_MAXPOS]:
        gi[GI_REJECTED] += 1
        return
    base = _equity(st, g, cfg, s, alloc)
    sizing = cfg[C_SIZING]
    if sizing == 0.0:
        notional = cfg[C_NOTIONAL]
    elif sizing == 1.0:
        notional = cfg[C_FRACTION] * base
    else:
        elapsed_s = (t - ist[s, I_FIRST]) / 1e6
        notional = np.nan
        if elapsed_s > 0.0 and ist[s, I_COUNT] > 1 and vol_sig > 0.0:
            rate = (ist[s, I_COUNT] - 1) / elapsed_s
            vol_annual = vol_sig * math.sqrt(rate * YEAR_S)
            notional = min(cfg[C_TVOL] / vol_annual, cfg[C_MAXLEV]) * base
    if not (notional > 0.0) or not (px > 0.0):
        gi[GI_SKIPPED] += 1
        return
    qty = notional / px
    fee = qty * px * fee_rate
    st[s, F_QTY] = qty if target > 0 else -qty
    st[s, F_EPX] = px
    st[s, F_EFEE] = fee
    st[s, F_REAL] -= fee
    g[G_REAL] -= fee
    st[s, F_FEES] += fee
    st[s, F_TURNOVER] += qty * px
    mark = st[s, F_MARK]
    u = st[s, F_QTY] * (mark - px) if mark == mark else 0.0
    st[s, F_UNREAL] = u
    g[G_UNREAL] += u
    ist[s, I_ETS] = t
    ist[s, I_ESIG] = sig_ts
    ist[s, I_SINCE] = t
    gi[GI_OPEN] += 1
    if gi[GI_OPEN] == 1:
        gi[GI_ANY_SINCE] = t


@njit(nogil=True, cache=True)
def _set_pending(s, i, t, target, reason, vol_sig, st, ist, cfg):
    ist[s, I_PON] = 1
    ist[s, I_PTARGET] = target
    ist[s, I_PROW] = i
    ist[s, I_PTS] = t + np.int64(cfg[C_LATENCY])
    ist[s, I_PSIG] = t
    ist[s, I_PREASON] = reason
    ist[s, I_PPOSTED] = 0
    st[s, F_PVOL] = vol_sig


@njit(nogil=True, cache=True)
def _write_grid(cur_b, b, eq_total, eq_sym, st, g, cfg, alloc, n_sym):
    while cur_b < b:
        eq_total[cur_b] = cfg[C_CASH] + g[G_REAL] + g[G_UNREAL]
        for j in range(n_sym):
            eq_sym[cur_b, j] = st[j, F_REAL] + st[j, F_UNREAL]  # the symbol's P&L so far
        cur_b += 1
    return cur_b


@njit(nogil=True, cache=True)
def simulate(ts, sym, price, bid, ask, code, vol, n_sym, cfg, trades, eq_total, eq_sym, st,
             ist, gi):
    """Run the book over rows in time order; fills the output arrays (``vol`` may be empty)."""
    n = ts.shape[0]
    g = np.zeros(2)
    alloc = cfg[C_CASH] / n_sym
    grid = np.int64(cfg[C_GRID])
    t0 = ts[0]
    slip = cfg[C_SLIP]
    is_limit = cfg[C_LIMIT] > 0.0
    has_vol = vol.shape[0] == n
    for j in range(n_sym):
        ist[j, I_FIRST] = -1
        st[j, F_MARK] = np.nan
        st[j, F_BID] = np.nan
        st[j, F_ASK] = np.nan
        st[j, F_PRICE] = np.nan
    cur_b = 0
    for i in range(n):
        s = sym[i]
        t = ts[i]
        b = (t - t0 + grid - 1) // grid  # point b holds equity after every row at <= t0 + b*grid
        if b > cur_b:
            cur_b = _write_grid(cur_b, b, eq_total, eq_sym, st, g, cfg, alloc, n_sym)
        if ist[s, I_FIRST] < 0:
            ist[s, I_FIRST] = t
        ist[s, I_COUNT] += 1
        bi = bid[i]
        ak = ask[i]
        px = price[i]
        has_q = bi > 0.0 and ak >= bi
        if has_q:
            buy_px = ak
            sell_px = bi
            mid = 0.5 * (bi + ak)
            st[s, F_BID] = bi
            st[s, F_ASK] = ak
        elif px > 0.0:
            buy_px = px * (1.0 + slip)
            sell_px = px * (1.0 - slip)
            mid = px
        else:
            gi[GI_UNPRICED] += 1  # counted and reported: nothing executable or markable
            continue
        if px > 0.0:
            st[s, F_PRICE] = px
        st[s, F_MARK] = mid
        q = st[s, F_QTY]
        if q != 0.0:
            u = q * (mid - st[s, F_EPX])
            g[G_UNREAL] += u - st[s, F_UNREAL]
            st[s, F_UNREAL] = u
        # 1. a pending order of this symbol, signalled on an earlier tick of it
        if ist[s, I_PON] == 1 and i > ist[s, I_PROW] and t >= ist[s, I_PTS]:
            target = ist[s, I_PTARGET]
            cur = 1 if q > 0 else (-1 if q < 0 else 0)
            buying = target > cur
            reason = ist[s, I_PREASON]
            if not is_limit or reason != R_SIGNAL:
                _transition(s, t, buy_px if buying else sell_px, cfg[C_TAKER], target,
                            ist[s, I_PSIG], reason, st[s, F_PVOL], st, ist, g, gi, trades,
                            cfg, alloc)
                ist[s, I_PON] = 0
            elif ist[s, I_PPOSTED] == 0:
                # the order joins the book at the touch; it can fill from the next tick on
                ist[s, I_PPOSTED] = 1
                ist[s, I_PPOSTTS] = t
                st[s, F_PLIMIT] = (bi if buying else ak) if has_q else px
            else:
                limit = st[s, F_PLIMIT]
                if buying:
                    crossed = (ak <= limit) if has_q else (px <= limit)
                else:
                    crossed = (bi >= limit) if has_q else (px >= limit)
                if crossed:
                    _transition(s, t, limit, cfg[C_MAKER], target, ist[s, I_PSIG], reason,
                                st[s, F_PVOL], st, ist, g, gi, trades, cfg, alloc)
                    ist[s, I_PON] = 0
                elif t - ist[s, I_PPOSTTS] >= cfg[C_TIMEOUT]:
                    if target == 0:
                        _transition(s, t, buy_px if buying else sell_px, cfg[C_TAKER], 0,
                                    ist[s, I_PSIG], reason, st[s, F_PVOL], st, ist, g, gi,
                                    trades, cfg, alloc)
                    else:
                        gi[GI_CANCELLED] += 1
                    ist[s, I_PON] = 0
            q = st[s, F_QTY]
        # 2. risk exits, at the executable quote
        fired = False
        if q != 0.0 and not (ist[s, I_PON] == 1 and ist[s, I_PTARGET] == 0):
            r = sell_px / st[s, F_EPX] - 1.0 if q > 0 else 1.0 - buy_px / st[s, F_EPX]
            reason = -1
            if cfg[C_SL] > 0.0 and r <= -cfg[C_SL]:
                reason = R_STOP
            elif cfg[C_TP] > 0.0 and r >= cfg[C_TP]:
                reason = R_TAKE
            elif cfg[C_MAXHOLD] >= 0.0 and t - ist[s, I_ETS] >= cfg[C_MAXHOLD]:
                reason = R_MAXHOLD
            if reason >= 0:
                _set_pending(s, i, t, 0, reason, np.nan, st, ist, cfg)
                fired = True
        # 3. this tick's signals (ignored while a risk exit is on its way)
        c = code[i]
        if fired or c == 0 or (ist[s, I_PON] == 1 and ist[s, I_PREASON] != R_SIGNAL):
            continue
        cur = 1 if q > 0 else (-1 if q < 0 else 0)
        intended = ist[s, I_PTARGET] if ist[s, I_PON] == 1 else cur
        new = intended
        e_long = (c & ENTRY_LONG) != 0
        e_short = (c & ENTRY_SHORT) != 0
        if intended == 1:
            if (c & EXIT_LONG) != 0:
                new = 0
            if e_short:
                new = -1
        elif intended == -1:
            if (c & EXIT_SHORT) != 0:
                new = 0
            if e_long:
                new = 1
        elif e_long != e_short:
            new = 1 if e_long else -1
        if new != intended:
            if new == cur:
                ist[s, I_PON] = 0
            else:
                _set_pending(s, i, t, new, R_SIGNAL, vol[i] if has_vol else np.nan, st, ist,
                             cfg)
    # close what is still open at the end, at each symbol's last quotes
    t_end = ts[n - 1]
    for j in range(n_sym):
        if ist[j, I_PON] == 1:
            gi[GI_UNFILLED] += 1
        q = st[j, F_QTY]
        if q == 0.0:
            continue
        if st[j, F_BID] == st[j, F_BID]:
            px = st[j, F_BID] if q > 0 else st[j, F_ASK]
        else:
            px = st[j, F_PRICE] * ((1.0 - slip) if q > 0 else (1.0 + slip))
        if st[j, F_BID] == st[j, F_BID]:
            mid = 0.5 * (st[j, F_BID] + st[j, F_ASK])
        else:
            mid = st[j, F_PRICE]
        u = q * (mid - st[j, F_EPX])
        g[G_UNREAL] += u - st[j, F_UNREAL]
        st[j, F_UNREAL] = u
        _transition(j, t_end, px, cfg[C_TAKER], 0, t_end, R_END, np.nan, st, ist, g, gi, trades,
                    cfg, alloc)
    _write_grid(cur_b, eq_total.shape[0], eq_total, eq_sym, st, g, cfg, alloc, n_sym)


@dataclass
class SimResult:
    """What one simulation produced; timestamps are int64 microseconds since the epoch."""

    trades: dict[str, np.ndarray]
    grid_ts: np.ndarray          # t0, t0 + grid, ... and the last tick's time
    equity: np.ndarray           # portfolio equity after every tick at or before grid_ts
    symbol_equity: np.ndarray    # (len(grid_ts), n_sym): share (per_symbol) or cash + P&L
    symbol_fees: np.ndarray
    symbol_turnover: np.ndarray
    symbol_time_in_us: np.ndarray
    time_in_market_us: int
    counters: dict[str, int]
    initial_cash: float
    n_symbols: int

    @property
    def start_us(self) -> int:
        return int(self.grid_ts[0])

    @property
    def end_us(self) -> int:
        return int(self.grid_ts[-1])


def config_vector(strategy: StrategySpec) -> np.ndarray:
    """The strategy's execution, sizing and portfolio settings in the simulator's layout."""
    ex, sz, pf = strategy.execution, strategy.sizing, strategy.portfolio
    cfg = np.zeros(18)
    cfg[C_LATENCY] = round(ex.latency_ms * 1_000)
    cfg[C_LIMIT] = 1.0 if ex.order_type == "limit" else 0.0
    cfg[C_TIMEOUT] = duration_us(ex.limit_timeout)
    cfg[C_TAKER] = ex.fees.taker_bps / 1e4
    cfg[C_MAKER] = ex.fees.maker_bps / 1e4
    cfg[C_SLIP] = ex.slippage_bps / 1e4
    cfg[C_SL] = ex.stop_loss or 0.0
    cfg[C_TP] = ex.take_profit or 0.0
    cfg[C_MAXHOLD] = duration_us(ex.max_holding) if ex.max_holding else -1.0
    cfg[C_SIZING] = SIZING_CODES[sz.method]
    cfg[C_NOTIONAL] = sz.notional
    cfg[C_FRACTION] = sz.fraction
    cfg[C_TVOL] = sz.target_vol
    cfg[C_MAXLEV] = sz.max_leverage
    cfg[C_CASH] = pf.initial_cash
    cfg[C_PER_SYMBOL] = 1.0 if pf.mode == "per_symbol" else 0.0
    cfg[C_MAXPOS] = pf.max_positions if (pf.max_positions and pf.mode == "portfolio") else 0.0
    cfg[C_GRID] = duration_us(strategy.grid)
    return cfg


def run_simulation(ts: np.ndarray, sym: np.ndarray, n_symbols: int, price: np.ndarray,
                   bid: np.ndarray, ask: np.ndarray, code: np.ndarray, vol: np.ndarray | None,
                   strategy: StrategySpec) -> SimResult:
    """Simulate ``strategy`` on rows sorted by time; ``code`` holds the plan's signal bits."""
    n = len(ts)
    if n == 0:
        raise ValueError("no ticks to backtest")
    cfg = config_vector(strategy)
    grid = int(cfg[C_GRID])
    t0, t_end = int(ts[0]), int(ts[-1])
    buckets = -(-(t_end - t0) // grid) + 1
    cap = int(np.count_nonzero(code & (ENTRY_LONG | ENTRY_SHORT))) + n_symbols + 1
    trades = np.empty((cap, len(TRADE_COLUMNS)))  # only the rows written are read
    eq_total = np.zeros(buckets)
    eq_sym = np.zeros((buckets, n_symbols))
    st = np.zeros((n_symbols, 13))
    ist = np.zeros((n_symbols, 14), dtype=np.int64)
    gi = np.zeros(9, dtype=np.int64)
    vol_arr = np.empty(0) if vol is None else np.ascontiguousarray(vol, dtype=np.float64)
    simulate(np.ascontiguousarray(ts, dtype=np.int64), np.ascontiguousarray(sym, dtype=np.int64),
             np.ascontiguousarray(price, dtype=np.float64),
             np.ascontiguousarray(bid, dtype=np.float64),
             np.ascontiguousarray(ask, dtype=np.float64),
             np.ascontiguousarray(code, dtype=np.int8), vol_arr, n_symbols, cfg, trades,
             eq_total, eq_sym, st, ist, gi)
    # a symbol's equity: its own equal share plus its P&L (per_symbol), or in portfolio mode
    # its P&L on the whole capital (its contribution), since it is sized from total equity
    per_symbol = strategy.portfolio.mode == "per_symbol"
    eq_sym += strategy.portfolio.initial_cash / (n_symbols if per_symbol else 1)
    k = int(gi[GI_TRADES])
    log = {name: trades[:k, j] for j, name in enumerate(TRADE_COLUMNS)}
    for name in ("symbol", "side", "reason"):
        log[name] = log[name].astype(np.int64)
    for name in ("entry_signal_ts", "entry_ts", "exit_signal_ts", "exit_ts"):
        log[name] = log[name].astype(np.int64)
    grid_ts = t0 + grid * np.arange(buckets, dtype=np.int64)
    grid_ts[-1] = t_end
    counters = {name: int(gi[j]) for j, name in enumerate(COUNTER_NAMES) if name != "_"}
    return SimResult(trades=log, grid_ts=grid_ts, equity=eq_total, symbol_equity=eq_sym,
                     symbol_fees=st[:, F_FEES].copy(), symbol_turnover=st[:, F_TURNOVER].copy(),
                     symbol_time_in_us=ist[:, I_TIMEIN].copy(),
                     time_in_market_us=int(gi[GI_ANY_TIME]), counters=counters,
                     initial_cash=strategy.portfolio.initial_cash, n_symbols=n_symbols)
