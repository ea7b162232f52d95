"""The plain data a backtest tearsheet is drawn from, and the figures derived from it.

Why plain data: the report must not depend on how a backtest was run (local, Dask, a sweep
point, the Python API); whoever has an equity curve, a trade log and metrics can build a
:class:`TearsheetData` and get the same report. :func:`from_backtest` is the adapter for the
engine's ``Backtest`` result; everything else here is pure numpy on arrays.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tickflow.engine.backtest.summary import is_annualisable

YEAR_S = 365.0 * 86_400.0


@dataclass
class TearsheetData:
    """Everything the backtest report shows. Timestamps are int64 microseconds (UTC).

    ``trades`` columns: symbol (str), side (+1/-1), entry_ts, exit_ts, entry_price,
    exit_price, quantity, fees, pnl, return, reason (str), and optionally mae, mfe (fractions
    of the entry price, adverse negative), spread_cost and slippage_cost (currency).
    ``prices`` maps a symbol to (ts, mid) arrays, already thinned or not.
    """

    title: str
    ts_us: np.ndarray
    equity: np.ndarray
    metrics: dict[str, float]
    trades: dict[str, np.ndarray]
    benchmark_equity: np.ndarray | None = None
    benchmark_metrics: dict[str, float] | None = None
    per_symbol: dict[str, dict[str, float]] = field(default_factory=dict)
    benchmark_per_symbol: dict[str, dict[str, float]] = field(default_factory=dict)
    prices: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    grid: str = ""
    plot_symbol: str | None = None


def drawdown_periods(ts_us: np.ndarray, equity: np.ndarray, count: int = 5
                     ) -> list[dict[str, Any]]:
    """The ``count`` deepest drawdowns: peak, trough and recovery times (recovery None while
    still under water), depth (a negative fraction) and duration in seconds."""
    eq = np.asarray(equity, dtype=np.float64)
    if len(eq) < 2:
        return []
    peak = np.maximum.accumulate(eq)
    under = eq < peak
    out = []
    edges = np.diff(np.concatenate([[0], under.astype(np.int8), [0]]))
    for lo, hi in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        dd = eq[lo:hi] / peak[lo:hi] - 1.0
        trough = lo + int(np.argmin(dd))
        recovered = hi < len(eq)
        end_us = int(ts_us[hi]) if recovered else int(ts_us[-1])
        out.append({"peak": int(ts_us[lo - 1]), "trough": int(ts_us[trough]),
                    "recovery": end_us if recovered else None, "depth": float(dd.min()),
                    "duration_s": (end_us - int(ts_us[lo - 1])) / 1e6})
    out.sort(key=lambda d: d["depth"])
    return out[:count]


def rolling_stats(ts_us: np.ndarray, equity: np.ndarray, window: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """(ts, Sharpe, volatility, window, annualised) of the grid returns over a moving window.

    Annualised by the observed periods per year when the sample is long enough to annualise,
    else scaled to the window (Sharpe * sqrt(window), volatility * sqrt(window)).
    """
    eq = np.asarray(equity, dtype=np.float64)
    r = eq[1:] / eq[:-1] - 1.0 if len(eq) > 1 else np.zeros(0)
    n = len(r)
    window = window or int(min(max(n // 20, 10), 500))
    if n < window or window < 2:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), window, False
    c1 = np.concatenate([[0.0], np.cumsum(r)])
    c2 = np.concatenate([[0.0], np.cumsum(r * r)])
    s1 = c1[window:] - c1[:-window]
    s2 = c2[window:] - c2[:-window]
    mean = s1 / window
    var = np.maximum(s2 - s1 * s1 / window, 0.0) / (window - 1)
    std = np.sqrt(var)
    elapsed_s = (float(ts_us[-1]) - float(ts_us[0])) / 1e6
    annual = is_annualisable(elapsed_s)
    scale = math.sqrt(n / (elapsed_s / YEAR_S)) if annual else math.sqrt(window)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 1e-15, mean / std, np.nan) * scale
    return np.asarray(ts_us[window:]), sharpe, std * scale, window, annual


def period_returns(ts_us: np.ndarray, equity: np.ndarray
                   ) -> tuple[str, list[str], list[str], np.ndarray]:
    """(granularity, row labels, column labels, returns[row, col]) for the returns heatmap:
    monthly for 90 days or more, daily for 3 days or more, hourly for 6 hours or more, else
    per 5 minutes for an hour or more, else per minute. A cell is the compounded return of the
    equity over that calendar bucket."""
    ts = np.asarray(ts_us, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    span_s = (ts[-1] - ts[0]) / 1e6 if len(ts) else 0.0
    dt = ts.astype("datetime64[us]")
    if span_s >= 90 * 86_400:
        kind, bucket = "monthly", dt.astype("datetime64[M]")
    elif span_s >= 3 * 86_400:
        kind, bucket = "daily", dt.astype("datetime64[D]")
    elif span_s >= 6 * 3600:
        kind, bucket = "hourly", dt.astype("datetime64[h]")
    elif span_s >= 3600:
        kind = "5-minute"
        bucket = (dt.astype("datetime64[m]").astype(np.int64) // 5 * 5).astype("datetime64[m]")
    else:
        kind, bucket = "minute", dt.astype("datetime64[m]")
    keys = bucket.astype(np.int64)
    last = np.flatnonzero(np.append(keys[1:] != keys[:-1], True))
    end_eq = eq[last]
    start_eq = np.concatenate([[eq[0]], end_eq[:-1]])
    rets = end_eq / start_eq - 1.0
    labels = bucket[last]
    if kind == "monthly":
        rows = [str(b)[:4] for b in labels]
        cols = [str(b)[5:7] for b in labels]
        col_names = [f"{m:02d}" for m in range(1, 13)]
    elif kind == "daily":
        rows = [str(b)[:7] for b in labels]
        cols = [str(b)[8:10] for b in labels]
        col_names = [f"{d:02d}" for d in range(1, 32)]
    elif kind == "hourly":
        rows = [str(b)[:10] for b in labels]
        cols = [str(b)[11:13] for b in labels]
        col_names = [f"{h:02d}" for h in range(24)]
    else:
        rows = [str(b)[:13].replace("T", " ") + "h" for b in labels]
        cols = [str(b)[14:16] for b in labels]
        col_names = [f"{m:02d}" for m in range(0, 60, 5 if kind == "5-minute" else 1)]
    row_names = list(dict.fromkeys(rows))
    grid = np.full((len(row_names), len(col_names)), np.nan)
    ri = {r: i for i, r in enumerate(row_names)}
    ci = {c: i for i, c in enumerate(col_names)}
    for r, c, v in zip(rows, cols, rets, strict=True):
        grid[ri[r], ci[c]] = v
    return kind, row_names, col_names, grid


def exposure_series(ts_us: np.ndarray, equity: np.ndarray, trades: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(gross exposure as a fraction of equity, open positions) at each grid time, from the
    trades' entry value held from entry to exit."""
    entry, exit_ = trades["entry_ts"].astype(np.int64), trades["exit_ts"].astype(np.int64)
    value = trades["quantity"] * trades["entry_price"]
    times = np.concatenate([entry, exit_])
    order = np.argsort(times, kind="stable")
    times = times[order]
    notional = np.cumsum(np.concatenate([value, -value])[order])
    count = np.cumsum(np.concatenate([np.ones(len(entry)), -np.ones(len(exit_))])[order])
    at = np.searchsorted(times, np.asarray(ts_us, dtype=np.int64), side="right") - 1
    held = np.where(at >= 0, notional[np.maximum(at, 0)] if len(times) else 0.0, 0.0)
    opened = np.where(at >= 0, count[np.maximum(at, 0)] if len(times) else 0.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gross = np.where(equity > 0, np.maximum(held, 0.0) / equity, np.nan)
    return gross, np.rint(opened).astype(np.int64)


def trade_path_figures(trades: dict[str, np.ndarray], symbols: list[str], ts: np.ndarray,
                       sym: np.ndarray, bid: np.ndarray, ask: np.ndarray, price: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """MAE/MFE and the spread/slippage cost of each trade, from the ticks of its symbol.

    MAE and MFE are the worst and best mid (or price) seen from the entry fill to the exit
    fill, as a fraction of the entry price (adverse negative). The spread cost is what a fill
    paid against the mid of its tick (negative when a limit order earned it); on a tick
    without quotes the fill's distance from ``price`` is the slippage instead.
    """
    n = len(trades["pnl"])
    out = {k: np.full(n, np.nan) for k in ("mae", "mfe")}
    out["spread_cost"] = np.zeros(n)
    out["slippage_cost"] = np.zeros(n)
    quoted = np.isfinite(bid) & np.isfinite(ask)
    mid = np.where(quoted, 0.5 * (bid + ask), price)
    names = trades["symbol"]
    for code, name in enumerate(symbols):
        mine = np.flatnonzero(names == name)
        if not len(mine):
            continue
        rows = np.flatnonzero(sym == code)
        t, m, q = ts[rows], mid[rows], quoted[rows]
        ref_price = price[rows]
        lo = np.searchsorted(t, trades["entry_ts"][mine].astype(np.int64), side="left")
        hi = np.searchsorted(t, trades["exit_ts"][mine].astype(np.int64), side="right")
        for k, a, b in zip(mine, lo, hi, strict=True):
            side, entry = trades["side"][k], trades["entry_price"][k]
            if b > a and entry > 0:
                path = m[a:b]
                worst, best = (np.nanmin(path), np.nanmax(path)) if side > 0 else \
                    (np.nanmax(path), np.nanmin(path))
                out["mae"][k] = side * (worst / entry - 1.0)
                out["mfe"][k] = side * (best / entry - 1.0)
            qty = trades["quantity"][k]
            for fill_at, fill_px, sign in ((a, entry, side), (b - 1, trades["exit_price"][k],
                                                              -side)):
                if not 0 <= fill_at < len(t):
                    continue
                # a buy (sign +1) pays fill - reference; a sell pays reference - fill
                if q[fill_at]:
                    out["spread_cost"][k] += sign * qty * (fill_px - m[fill_at])
                else:
                    out["slippage_cost"][k] += sign * qty * (fill_px - ref_price[fill_at])
    return out


def _thin_prices(ts: np.ndarray, mid: np.ndarray, max_points: int = 3_000
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each bucket of ticks, so the price line keeps its extremes."""
    n = len(mid)
    if n <= max_points:
        return ts, mid
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = []
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            part = mid[lo:hi]
            if np.isfinite(part).any():
                a, b = lo + int(np.nanargmin(part)), lo + int(np.nanargmax(part))
                idx += [min(a, b), max(a, b)]
    keep = np.unique(np.asarray(idx, dtype=np.int64))
    return ts[keep], mid[keep]


def from_backtest(bt: Any) -> TearsheetData:
    """The tearsheet data of an engine ``Backtest`` (duck-typed: no import of the runner)."""
    r, data = bt.result, bt.data
    t = r.trades
    symbols = list(data.symbols)
    names = np.array(symbols, dtype=object)[t["symbol"].astype(np.int64)] if len(t["pnl"]) \
        else np.zeros(0, dtype=object)
    from tickflow.engine.backtest.sim_layout import REASONS

    value = t["quantity"] * t["entry_price"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(value > 0, t["pnl"] / value, np.nan)
    trades = {"symbol": names, "side": t["side"], "entry_ts": t["entry_ts"],
              "exit_ts": t["exit_ts"], "entry_price": t["entry_price"],
              "exit_price": t["exit_price"], "quantity": t["quantity"], "fees": t["fees"],
              "pnl": t["pnl"], "return": ret,
              "reason": np.array([REASONS[int(x)] for x in t["reason"]], dtype=object)}
    cols = data.columns
    trades.update(trade_path_figures(trades, symbols, data.ts, data.sym, cols["best_bid"],
                                     cols["best_ask"], cols["price"]))
    prices = {}
    quoted = np.isfinite(cols["best_bid"]) & np.isfinite(cols["best_ask"])
    mid_all = np.where(quoted, 0.5 * (cols["best_bid"] + cols["best_ask"]), cols["price"])
    for code, s in enumerate(symbols):
        rows = np.flatnonzero(data.sym == code)
        prices[s] = _thin_prices(data.ts[rows], mid_all[rows])
    return TearsheetData(
        title=f"{bt.job.spec.name}: backtest report", ts_us=r.grid_ts, equity=r.equity,
        metrics=bt.metrics, trades=trades,
        benchmark_equity=bt.benchmark.equity if bt.benchmark is not None else None,
        benchmark_metrics=bt.benchmark_metrics if bt.benchmark is not None else None,
        per_symbol=bt.per_symbol, benchmark_per_symbol=bt.benchmark_per_symbol,
        prices=prices, facts=_facts(bt), notes=[per_symbol_basis(bt)],
        grid=bt.strategy.grid, plot_symbol=bt.strategy.plot_symbol)


def _facts(bt: Any) -> list[tuple[str, str]]:
    s = bt.strategy
    start = datetime.fromtimestamp(bt.result.start_us / 1e6, UTC)
    end = datetime.fromtimestamp(bt.result.end_us / 1e6, UTC)
    rules = []
    for side in ("long", "short"):
        rule = getattr(s, side)
        if rule is not None:
            rules.append(f"{side}: enter `{rule.entry}`, exit `{rule.exit}`")
    ex = s.execution
    facts = [("job", f"{bt.job.spec.name} ({bt.job.loaded.path})"),
             ("rules", "; ".join(rules)),
             ("params", ", ".join(f"{k}={v:g}" for k, v in s.params.items()) or "-"),
             ("data", f"{len(bt.data):,} ticks of {len(bt.data.symbols)} symbols, "
                      f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"),
             ("features", bt.data.origin),
             ("execution", f"{ex.order_type} orders, next tick of the symbol after the signal "
                           f"+ {ex.latency_ms:g} ms; taker {ex.fees.taker_bps:g} bps, maker "
                           f"{ex.fees.maker_bps:g} bps, slippage {ex.slippage_bps:g} bps on "
                           f"ticks without quotes"),
             ("sizing", f"{s.sizing.method}; {s.portfolio.mode}, initial cash "
                        f"{s.portfolio.initial_cash:,.0f}"),
             ("metric grid", s.grid)]
    facts += [("note", n) for n in bt.data.notes]
    counters = {k: v for k, v in bt.result.counters.items()
                if v and k not in ("trade_count", "time_in_market_us", "open_positions")}
    if counters:
        facts.append(("counters", ", ".join(f"{k}={v:,}" for k, v in counters.items())))
    return facts


def per_symbol_basis(bt: Any) -> str:
    if bt.strategy.portfolio.mode == "per_symbol":
        return ("Per-symbol figures are relative to each symbol's equal share of the initial "
                "cash, which it trades on its own.")
    return ("Per-symbol figures are each symbol's contribution: its P&L relative to the whole "
            "initial cash (positions are sized from total equity). Buy and hold per symbol "
            "invests an equal share in each.")
