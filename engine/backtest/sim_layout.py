"""The simulator's array layout: slot indices of its per-symbol and global state, of the
trade log and of the config vector, the exit reasons, and the config vector built from a
strategy. ``fills.py`` runs the simulation; ``positions.py`` moves positions."""

from __future__ import annotations

import numpy as np

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
