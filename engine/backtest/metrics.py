"""Performance metrics of an equity curve and a trade log.

Conventions (each is tested against a hand-computed example in tests/backtest):

* returns are simple returns between consecutive points of the equity curve sampled on the
  strategy's calendar grid; they are annualised with the *observed* number of such periods per
  calendar year (``len(returns) / elapsed_years``), never with an assumed bar frequency, and a
  year is 365 days (crypto trades every day);
* ``annual_return`` = (E_end / E_0) ** (1 / elapsed_years) - 1;
* ``volatility`` = sample std (ddof 1) * sqrt(periods per year); ``sharpe`` = mean / std *
  sqrt(periods per year) with a zero risk-free rate; ``sortino`` uses the downside deviation
  sqrt(mean(min(r, 0)**2)) instead of the std; ``calmar`` = annual_return / |max_drawdown|;
* ``max_drawdown`` = min(E / running max(E) - 1) (a negative fraction) and
  ``max_drawdown_duration_s`` the longest time from a peak until equity is back at that peak
  (or the end of the data);
* the ``period_*`` figures are the same measures over the whole sample, not annualised:
  ``period_volatility`` = std * sqrt(n), ``period_sharpe`` = mean / std * sqrt(n),
  ``period_sortino`` likewise, ``return_over_drawdown`` = total_return / |max_drawdown|;
  reports show them instead of the annual ones on samples shorter than 30 days;
* ``win_rate``, ``profit_factor`` (gross profit / gross loss), ``avg_trade`` (currency),
  ``avg_trade_return`` (P&L / entry value) come from closed trades, fees included;
* ``turnover`` = traded value / mean equity; ``exposure`` = share of the elapsed time with a
  position open.
"""

from __future__ import annotations

import math

import numpy as np

from tickflow.engine.backtest.fills import SimResult
from tickflow.engine.backtest.sim_layout import YEAR_S


def _safe_div(a: float, b: float) -> float:
    if b == 0 or not math.isfinite(b):
        return math.nan
    return a / b


def equity_metrics(ts_us: np.ndarray, equity: np.ndarray) -> dict[str, float]:
    """Return, risk and drawdown figures of one equity curve sampled at ``ts_us``."""
    eq = np.asarray(equity, dtype=np.float64)
    elapsed_s = (float(ts_us[-1]) - float(ts_us[0])) / 1e6 if len(ts_us) else 0.0
    years = elapsed_s / YEAR_S
    total = float(eq[-1] / eq[0] - 1.0) if len(eq) else math.nan
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if years > 0 and eq[-1] > 0:
            annual = float(np.expm1(np.log(eq[-1] / eq[0]) / years))
        else:
            annual = math.nan
        r = eq[1:] / eq[:-1] - 1.0 if len(eq) > 1 else np.zeros(0)
    per_year = len(r) / years if years > 0 else math.nan
    if len(r) > 1:
        mean, std = float(np.mean(r)), float(np.std(r, ddof=1))
        downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
        vol = std * math.sqrt(per_year)
        sharpe = _safe_div(mean, std) * math.sqrt(per_year)
        sortino = _safe_div(mean, downside) * math.sqrt(per_year)
        root_n = math.sqrt(len(r))
        period = {"period_volatility": std * root_n,
                  "period_sharpe": _safe_div(mean, std) * root_n,
                  "period_sortino": _safe_div(mean, downside) * root_n}
    else:
        vol = sharpe = sortino = math.nan
        period = dict.fromkeys(("period_volatility", "period_sharpe", "period_sortino"),
                               math.nan)
    peak = np.maximum.accumulate(eq) if len(eq) else eq
    dd = eq / peak - 1.0 if len(eq) else eq
    mdd = float(dd.min()) if len(dd) else math.nan
    return {"total_return": total, "annual_return": annual, "volatility": vol,
            "sharpe": sharpe, "sortino": sortino,
            "calmar": _safe_div(annual, abs(mdd)) if mdd == mdd else math.nan,
            "max_drawdown": mdd, "max_drawdown_duration_s": drawdown_duration_s(ts_us, eq),
            **period, "return_over_drawdown": _safe_div(total, abs(mdd)) if mdd == mdd
            else math.nan}


def drawdown_duration_s(ts_us: np.ndarray, equity: np.ndarray) -> float:
    """Longest time from a peak until equity first regains it (or the data ends), in s."""
    longest = 0
    peak = -math.inf
    peak_t = 0
    under = False
    for t, e in zip(np.asarray(ts_us, dtype=np.int64).tolist(), np.asarray(equity).tolist(),
                    strict=True):
        if e >= peak:
            if under:
                longest = max(longest, t - peak_t)
                under = False
            peak, peak_t = e, t
        else:
            under = True
    if under:
        longest = max(longest, int(ts_us[-1]) - peak_t)
    return longest / 1e6


def trade_metrics(pnl: np.ndarray, entry_value: np.ndarray) -> dict[str, float]:
    """Win rate, profit factor and averages of closed trades (P&L net of fees)."""
    pnl = np.asarray(pnl, dtype=np.float64)
    n = len(pnl)
    if n == 0:
        return {"win_rate": math.nan, "profit_factor": math.nan, "avg_trade": math.nan,
                "avg_trade_return": math.nan, "trade_count": 0}
    gains = float(pnl[pnl > 0].sum())
    losses = float(-pnl[pnl < 0].sum())
    pf = gains / losses if losses > 0 else (math.inf if gains > 0 else math.nan)
    return {"win_rate": float(np.mean(pnl > 0)), "profit_factor": pf,
            "avg_trade": float(pnl.mean()),
            "avg_trade_return": float(np.mean(pnl / np.asarray(entry_value))),
            "trade_count": n}


def result_metrics(result: SimResult, symbol: int | None = None) -> dict[str, float]:
    """Every metric of the portfolio (``symbol`` None) or of one symbol's share."""
    trades = result.trades
    elapsed_us = result.end_us - result.start_us
    if symbol is None:
        equity = result.equity
        mask = np.ones(len(trades["pnl"]), dtype=bool)
        fees = float(result.symbol_fees.sum())
        traded = float(result.symbol_turnover.sum())
        time_in = result.time_in_market_us
    else:
        equity = result.symbol_equity[:, symbol]
        mask = trades["symbol"] == symbol
        fees = float(result.symbol_fees[symbol])
        traded = float(result.symbol_turnover[symbol])
        time_in = int(result.symbol_time_in_us[symbol])
    out = equity_metrics(result.grid_ts, equity)
    out.update(trade_metrics(trades["pnl"][mask],
                             trades["quantity"][mask] * trades["entry_price"][mask]))
    out["turnover"] = _safe_div(traded, float(np.mean(equity)))
    out["exposure"] = _safe_div(float(time_in), float(elapsed_us))
    out["fees_paid"] = fees
    out["elapsed_s"] = elapsed_us / 1e6
    return out
