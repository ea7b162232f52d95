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

from dataclasses import dataclass

import numpy as np
from numba import njit

from tickflow.engine.backtest.plan import ENTRY_LONG, ENTRY_SHORT, EXIT_LONG, EXIT_SHORT
from tickflow.engine.backtest.positions import set_pending, transition, write_grid
from tickflow.engine.backtest.sim_layout import (
    C_CASH,
    C_GRID,
    C_LIMIT,
    C_MAKER,
    C_MAXHOLD,
    C_SL,
    C_SLIP,
    C_TAKER,
    C_TIMEOUT,
    C_TP,
    COUNTER_NAMES,
    F_ASK,
    F_BID,
    F_EPX,
    F_FEES,
    F_MARK,
    F_PLIMIT,
    F_PRICE,
    F_PVOL,
    F_QTY,
    F_TURNOVER,
    F_UNREAL,
    G_UNREAL,
    GI_ANY_TIME,
    GI_CANCELLED,
    GI_TRADES,
    GI_UNFILLED,
    GI_UNPRICED,
    I_COUNT,
    I_ETS,
    I_FIRST,
    I_PON,
    I_PPOSTED,
    I_PPOSTTS,
    I_PREASON,
    I_PROW,
    I_PSIG,
    I_PTARGET,
    I_PTS,
    I_TIMEIN,
    R_END,
    R_MAXHOLD,
    R_SIGNAL,
    R_STOP,
    R_TAKE,
    TRADE_COLUMNS,
    config_vector,
)
from tickflow.engine.backtest.spec import StrategySpec


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
            cur_b = write_grid(cur_b, b, eq_total, eq_sym, st, g, cfg, alloc, n_sym)
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
                transition(s, t, buy_px if buying else sell_px, cfg[C_TAKER], target,
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
                    transition(s, t, limit, cfg[C_MAKER], target, ist[s, I_PSIG], reason,
                                st[s, F_PVOL], st, ist, g, gi, trades, cfg, alloc)
                    ist[s, I_PON] = 0
                elif t - ist[s, I_PPOSTTS] >= cfg[C_TIMEOUT]:
                    if target == 0:
                        transition(s, t, buy_px if buying else sell_px, cfg[C_TAKER], 0,
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
                set_pending(s, i, t, 0, reason, np.nan, st, ist, cfg)
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
                set_pending(s, i, t, new, R_SIGNAL, vol[i] if has_vol else np.nan, st, ist,
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
        transition(j, t_end, px, cfg[C_TAKER], 0, t_end, R_END, np.nan, st, ist, g, gi, trades,
                    cfg, alloc)
    write_grid(cur_b, eq_total.shape[0], eq_total, eq_sym, st, g, cfg, alloc, n_sym)


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
