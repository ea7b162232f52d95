"""Backtest outputs: trade log and equity Parquet, the HTML tearsheet, the terminal table.

The tearsheet is built from plain data (:mod:`tearsheet_data`) and rendered with Bokeh only
when written (:mod:`tearsheet`). The terminal and the HTML take their metric rows and warnings
from one function, :func:`summary.summarise`. Parquet outputs carry the job's provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from tickflow.engine.backtest.sim_layout import REASONS
from tickflow.engine.backtest.summary import LABELS, fmt, metric_text, shown_name, summarise
from tickflow.engine.backtest.sweep_report import print_sweep, write_sweep

if TYPE_CHECKING:
    from tickflow.engine.backtest.data import MarketData
    from tickflow.engine.backtest.fills import SimResult
    from tickflow.engine.backtest.spec import StrategySpec
    from tickflow.engine.compile import CompiledJob

    class Backtest(Protocol):
        """What a report reads of ``run.Backtest``; named here so the report never imports run."""

        job: CompiledJob
        data: MarketData
        result: SimResult
        benchmark: SimResult | None
        metrics: dict[str, float]
        benchmark_metrics: dict[str, float]
        per_symbol: dict[str, dict[str, float]]
        benchmark_per_symbol: dict[str, dict[str, float]]
        seconds: float
        paths: dict[str, str]

        @property
        def strategy(self) -> StrategySpec: ...

SHOWN = LABELS  # the name other modules used for the metric labels
_US = pa.timestamp("us", tz="UTC")


# ------------------------------------------------------------------ Parquet

def trade_table(bt: Backtest) -> pa.Table:
    t = bt.result.trades
    symbols = np.array(bt.data.symbols, dtype=object)
    entry_value = t["quantity"] * t["entry_price"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(entry_value > 0, t["pnl"] / entry_value, np.nan)
    return pa.table({
        "symbol": pa.array(symbols[t["symbol"]].tolist(), pa.string()),
        "side": pa.array(np.where(t["side"] > 0, "long", "short").tolist(), pa.string()),
        "entry_signal_time": pa.array(t["entry_signal_ts"], pa.int64()).cast(_US),
        "entry_time": pa.array(t["entry_ts"], pa.int64()).cast(_US),
        "entry_price": t["entry_price"], "exit_signal_time":
            pa.array(t["exit_signal_ts"], pa.int64()).cast(_US),
        "exit_time": pa.array(t["exit_ts"], pa.int64()).cast(_US),
        "exit_price": t["exit_price"], "quantity": t["quantity"], "fees": t["fees"],
        "pnl": t["pnl"], "return": ret,
        "holding_s": (t["exit_ts"] - t["entry_ts"]) / 1e6,
        "reason": pa.array([REASONS[r] for r in t["reason"]], pa.string()),
    })


def equity_table(bt: Backtest) -> pa.Table:
    r = bt.result
    eq = r.equity
    cols: dict[str, Any] = {
        "timestamp": pa.array(r.grid_ts, pa.int64()).cast(_US), "equity": eq,
        "drawdown": eq / np.maximum.accumulate(eq) - 1.0}
    if bt.benchmark is not None:
        cols["benchmark_equity"] = bt.benchmark.equity
    for i, s in enumerate(bt.data.symbols):
        cols[f"equity_{s}"] = r.symbol_equity[:, i]
    return pa.table(cols)


def _write_parquet(table: pa.Table, path: Path, provenance: dict[str, str]) -> None:
    from tickflow.connectors.parquet_writer import write_parquet_table

    write_parquet_table(table, path, provenance)


def write_outputs(bt: Backtest, paths: dict[str, Path]) -> dict[str, str]:
    """Trade log, equity curve and HTML report; returns what was written where."""
    prov = bt.job.context.provenance()
    _write_parquet(trade_table(bt), paths["trades"], prov)
    _write_parquet(equity_table(bt), paths["equity"], prov)
    paths["report"].parent.mkdir(parents=True, exist_ok=True)
    paths["report"].write_text(backtest_html(bt), encoding="utf-8")
    return {k: str(paths[k]) for k in ("trades", "equity", "report")}


def backtest_html(bt: Backtest) -> str:
    """The tearsheet of an engine backtest (Bokeh is imported here, not before)."""
    from tickflow.engine.backtest.tearsheet import tearsheet_html
    from tickflow.engine.backtest.tearsheet_data import from_backtest

    return tearsheet_html(from_backtest(bt))


# ------------------------------------------------------------------ terminal

def print_backtest(bt: Backtest, console: Any, seconds: float) -> None:
    """The metrics table and warnings (the same rows as the HTML), per symbol, the files."""
    from rich.markup import escape
    from rich.table import Table

    summary = summarise(bt.metrics, bt.benchmark_metrics if bt.benchmark else None)
    table = Table(title=f"{bt.job.spec.name}: backtest", show_lines=False)
    table.add_column("metric")
    table.add_column("strategy", justify="right")
    table.add_column("buy and hold", justify="right")
    for label, strategy, benchmark in summary.rows:
        table.add_row(label, escape(strategy), escape(benchmark))
    console.print(f"{len(bt.data):,} ticks of {len(bt.data.symbols)} symbols; "
                  f"{bt.data.origin}")
    for note in bt.data.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(table)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    first = next(iter(bt.per_symbol.values()), {})
    sharpe = shown_name("sharpe", first)
    sym = Table(title="per symbol", show_lines=False)
    for col in ("symbol", "trades", "return", LABELS[sharpe][0], "max DD", "win rate",
                "B&H return"):
        sym.add_column(col, justify="left" if col == "symbol" else "right")
    for s, m in bt.per_symbol.items():
        bench = bt.benchmark_per_symbol.get(s)
        sym.add_row(s, *(metric_text(k, m, compact=True) for k in
                         ("trade_count", "total_return", sharpe, "max_drawdown", "win_rate")),
                    metric_text("total_return", bench, compact=True) if bench else "-")
    console.print(sym)
    from tickflow.engine.backtest.tearsheet_data import per_symbol_basis

    console.print(per_symbol_basis(bt))
    rate = len(bt.data) / bt.seconds if bt.seconds > 0 else 0.0
    console.print(f"simulation {bt.seconds * 1e3:,.0f} ms ({rate:,.0f} ticks/s); "
                  f"total {seconds:.2f} s")
    for key, path in bt.paths.items():
        console.print(f"{key}: {path}")


__all__ = ["SHOWN", "backtest_html", "equity_table", "fmt", "print_backtest", "print_sweep",
           "trade_table", "write_outputs", "write_sweep"]
