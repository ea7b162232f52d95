"""Backtest outputs: trade log and equity Parquet, a self-contained HTML report, a terminal table.

The HTML embeds its PNGs (matplotlib's object API on Agg: no global pyplot state) as base64,
so the one file can be mailed or committed. Parquet outputs carry the job's provenance.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from tickflow.engine.backtest.fills import REASONS

if TYPE_CHECKING:
    from tickflow.engine.backtest.data import MarketData
    from tickflow.engine.backtest.fills import SimResult
    from tickflow.engine.backtest.spec import StrategySpec, SweepSpec
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

# metric: (label, format); percentages are fractions shown as %
SHOWN = {
    "total_return": ("total return", "pct"), "annual_return": ("annualised return", "pct"),
    "volatility": ("volatility (ann.)", "pct"), "sharpe": ("Sharpe", "num"),
    "sortino": ("Sortino", "num"), "calmar": ("Calmar", "num"),
    "max_drawdown": ("max drawdown", "pct"), "max_drawdown_duration_s": ("max DD duration",
                                                                         "dur"),
    "trade_count": ("trades", "int"), "win_rate": ("win rate", "pct"),
    "profit_factor": ("profit factor", "num"), "avg_trade": ("average trade", "money"),
    "avg_trade_return": ("average trade return", "pct"), "turnover": ("turnover", "num"),
    "exposure": ("exposure", "pct"), "fees_paid": ("fees paid", "money"),
}
_US = pa.timestamp("us", tz="UTC")


def fmt(value: Any, kind: str, compact: bool = False) -> str:
    """A metric for people: 12.3%, 1.42, 2h05m, 1,234.56 (``compact``: fewer decimals)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind == "pct":
        if abs(value) >= 1e6:
            return f"{value:.3g}x"
        return f"{value * 100:,.1f}%" if compact else f"{value * 100:,.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "dur":
        s = int(value)
        return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:,.0f}" if compact and abs(value) >= 100 else f"{value:,.2f}"


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
    from tickflow.connectors.parquet import AtomicParquetWriter

    writer = AtomicParquetWriter(path, table.schema, metadata=provenance)
    try:
        for batch in table.to_batches():
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def write_outputs(bt: Backtest, paths: dict[str, Path]) -> dict[str, str]:
    """Trade log, equity curve and HTML report; returns what was written where."""
    prov = bt.job.context.provenance()
    _write_parquet(trade_table(bt), paths["trades"], prov)
    _write_parquet(equity_table(bt), paths["equity"], prov)
    paths["report"].parent.mkdir(parents=True, exist_ok=True)
    paths["report"].write_text(backtest_html(bt), encoding="utf-8")
    return {k: str(paths[k]) for k in ("trades", "equity", "report")}


# ------------------------------------------------------------------ plots

def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _dates(us: np.ndarray) -> np.ndarray:
    return np.asarray(us, dtype="datetime64[us]")


def plots(bt: Backtest) -> dict[str, str]:
    """Base64 PNGs: equity and drawdown, per-symbol returns, trades on price, trade returns."""
    from matplotlib.figure import Figure

    r = bt.result
    out: dict[str, str] = {}
    fig = Figure(figsize=(10, 5.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    x = _dates(r.grid_ts)
    ax1.plot(x, r.equity, label="strategy", color="#1f6fb4", lw=1.2)
    if bt.benchmark is not None:
        ax1.plot(x, bt.benchmark.equity, label="buy and hold", color="#999", lw=1.0)
    ax1.set_ylabel("equity")
    ax1.legend(loc="best")
    ax1.grid(alpha=0.3)
    dd = r.equity / np.maximum.accumulate(r.equity) - 1.0
    ax2.fill_between(x, dd * 100, 0, color="#c0392b", alpha=0.5, lw=0)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    out["equity"] = _png(fig)

    syms = bt.data.symbols
    fig = Figure(figsize=(10, 3.8))
    ax = fig.subplots()
    pos = np.arange(len(syms))
    strat = [bt.per_symbol[s]["total_return"] * 100 for s in syms]
    ax.bar(pos - 0.2, strat, 0.4, label="strategy", color="#1f6fb4")
    if bt.benchmark is not None:
        ax.bar(pos + 0.2, [bt.benchmark_per_symbol[s]["total_return"] * 100 for s in syms],
               0.4, label="buy and hold", color="#bbb")
    ax.set_xticks(pos, syms, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("contribution %" if bt.strategy.portfolio.mode == "portfolio"
                  else "return on the symbol's share %")
    ax.axhline(0, color="#444", lw=0.6)
    ax.legend()
    out["symbols"] = _png(fig)

    sym = plot_symbol(bt)
    if sym is not None:
        out["trades"] = _trades_png(bt, sym)
    pnl = r.trades["pnl"]
    if len(pnl):
        value = r.trades["quantity"] * r.trades["entry_price"]
        fig = Figure(figsize=(10, 3.2))
        ax = fig.subplots()
        ax.hist(pnl / value * 1e4, bins=min(60, max(10, len(pnl) // 5)), color="#1f6fb4")
        ax.axvline(0, color="#444", lw=0.6)
        ax.set_xlabel("trade return, bps (net of fees)")
        ax.set_ylabel("trades")
        out["distribution"] = _png(fig)
    return out


def plot_symbol(bt: Backtest) -> str | None:
    wanted = bt.strategy.plot_symbol
    if wanted is not None and wanted in bt.data.symbols:
        return wanted
    counts = np.bincount(bt.result.trades["symbol"], minlength=len(bt.data.symbols))
    return bt.data.symbols[int(np.argmax(counts))] if counts.sum() else None


def _trades_png(bt: Backtest, sym: str) -> str:
    from matplotlib.figure import Figure

    i = bt.data.symbols.index(sym)
    rows = np.flatnonzero(bt.data.sym == i)
    step = max(1, len(rows) // 6000)
    shown = rows[::step]
    cols = bt.data.columns
    mid = np.where(np.isfinite(cols["best_bid"][shown]),
                   0.5 * (cols["best_bid"][shown] + cols["best_ask"][shown]),
                   cols["price"][shown])
    t = bt.result.trades
    mine = t["symbol"] == i
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    ax.plot(_dates(bt.data.ts[shown]), mid, color="#555", lw=0.6, label=f"{sym} mid")
    long_, short = mine & (t["side"] > 0), mine & (t["side"] < 0)
    ax.scatter(_dates(t["entry_ts"][long_]), t["entry_price"][long_], marker="^", s=28,
               color="#27ae60", label="buy (long entry)", zorder=3)
    ax.scatter(_dates(t["exit_ts"][long_]), t["exit_price"][long_], marker="v", s=28,
               color="#c0392b", label="sell (long exit)", zorder=3)
    if short.any():
        ax.scatter(_dates(t["entry_ts"][short]), t["entry_price"][short], marker="v", s=28,
                   color="#8e44ad", label="sell (short entry)", zorder=3)
        ax.scatter(_dates(t["exit_ts"][short]), t["exit_price"][short], marker="^", s=28,
                   color="#e67e22", label="buy (short exit)", zorder=3)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


# ------------------------------------------------------------------ HTML

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%} .warn{background:#fff4e0;border-left:4px solid #e67e22;padding:.6em}"""


def _page(title: str, body: str) -> str:
    e = html.escape
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title>\n<style>\n{_CSS}\n</style></head><body>\n"
            f"<h1>{e(title)}</h1>\n{body}\n</body></html>\n")


def _table(heads: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(
        f"<td{' class=n' if j else ''}>{e(c)}</td>" for j, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(bt: Backtest) -> list[tuple[str, str]]:
    s = bt.strategy
    start = datetime.fromtimestamp(bt.result.start_us / 1e6, UTC)
    end = datetime.fromtimestamp(bt.result.end_us / 1e6, UTC)
    rules = []
    for side in ("long", "short"):
        r = getattr(s, side)
        if r is not None:
            rules.append(f"{side}: enter `{r.entry}`, exit `{r.exit}`")
    ex = s.execution
    facts = [("job", f"{bt.job.spec.name} ({bt.job.loaded.path})"),
             ("rules", "; ".join(rules)),
             ("params", ", ".join(f"{k}={v:g}" for k, v in s.params.items()) or "-"),
             ("data", f"{len(bt.data):,} ticks of {len(bt.data.symbols)} symbols, "
                      f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"),
             ("features", bt.data.origin),
             ("execution", f"{ex.order_type} orders, next tick of the symbol after the signal "
                           f"+ {ex.latency_ms:g} ms; taker {ex.fees.taker_bps:g} bps, maker "
                           f"{ex.fees.maker_bps:g} bps"),
             ("sizing", f"{s.sizing.method}; {s.portfolio.mode}, initial cash "
                        f"{s.portfolio.initial_cash:,.0f}"),
             ("metric grid", s.grid)]
    facts += [("note", n) for n in bt.data.notes]
    counters = {k: v for k, v in bt.result.counters.items()
                if v and k not in ("trade_count", "time_in_market_us", "open_positions")}
    if counters:
        facts.append(("counters", ", ".join(f"{k}={v:,}" for k, v in counters.items())))
    return facts


def _per_symbol_basis(bt: Backtest) -> str:
    if bt.strategy.portfolio.mode == "per_symbol":
        return ("Per-symbol figures are relative to each symbol's equal share of the initial "
                "cash, which it trades on its own.")
    return ("Per-symbol figures are each symbol's contribution: its P&L relative to the whole "
            "initial cash (positions are sized from total equity). Buy and hold per symbol "
            "invests an equal share in each.")


def backtest_html(bt: Backtest) -> str:
    e = html.escape
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(bt))
    metric_rows = [[label, fmt(bt.metrics[k], kind),
                    fmt(bt.benchmark_metrics.get(k), kind) if bt.benchmark else "-"]
                   for k, (label, kind) in SHOWN.items()]
    sym_heads = ["symbol", "trades", "return", "Sharpe", "max drawdown", "win rate",
                 "profit factor", "fees", "exposure", "buy & hold return"]
    sym_rows = [[s, fmt(m["trade_count"], "int"), fmt(m["total_return"], "pct"),
                 fmt(m["sharpe"], "num"), fmt(m["max_drawdown"], "pct"),
                 fmt(m["win_rate"], "pct"), fmt(m["profit_factor"], "num"),
                 fmt(m["fees_paid"], "money"), fmt(m["exposure"], "pct"),
                 fmt(bt.benchmark_per_symbol.get(s, {}).get("total_return"), "pct")]
                for s, m in bt.per_symbol.items()]
    imgs = plots(bt)

    def img(key: str, alt: str) -> str:
        return (f"<img alt='{alt}' src='data:image/png;base64,{imgs[key]}'>"
                if key in imgs else "<p>(no trades to draw)</p>")

    sym = plot_symbol(bt)
    body = f"""<table>{facts}</table>
<h2>Metrics</h2>
{_table(["metric", "strategy", "buy and hold"], metric_rows)}
<p>Returns and risk are measured on equity sampled every {e(bt.strategy.grid)} and annualised by
elapsed calendar time (365-day year); over a short sample annualised figures are extreme and
noisy. {e(_per_symbol_basis(bt))}</p>
<h2>Equity and drawdown</h2>
{img("equity", "equity and drawdown")}
<h2>Per-symbol returns</h2>
{img("symbols", "per-symbol returns")}
{_table(sym_heads, sym_rows)}
<h2>Trades on {e(sym or "-")}</h2>
{img("trades", "trades on price")}
<h2>Distribution of trade returns</h2>
{img("distribution", "trade returns")}"""
    return _page(f"{bt.job.spec.name}: backtest report", body)


# ------------------------------------------------------------------ terminal

def print_backtest(bt: Backtest, console: Any, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"{bt.job.spec.name}: backtest", show_lines=False)
    table.add_column("metric")
    table.add_column("strategy", justify="right")
    table.add_column("buy and hold", justify="right")
    for k, (label, kind) in SHOWN.items():
        table.add_row(label, fmt(bt.metrics[k], kind),
                      fmt(bt.benchmark_metrics.get(k), kind) if bt.benchmark else "-")
    console.print(f"{len(bt.data):,} ticks of {len(bt.data.symbols)} symbols; "
                  f"{bt.data.origin}")
    for note in bt.data.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(table)
    sym = Table(title="per symbol", show_lines=False)
    for col in ("symbol", "trades", "return", "Sharpe", "max DD", "win rate", "B&H return"):
        sym.add_column(col, justify="left" if col == "symbol" else "right")
    for s, m in bt.per_symbol.items():
        sym.add_row(s, fmt(m["trade_count"], "int"), fmt(m["total_return"], "pct"),
                    fmt(m["sharpe"], "num"), fmt(m["max_drawdown"], "pct"),
                    fmt(m["win_rate"], "pct"),
                    fmt(bt.benchmark_per_symbol.get(s, {}).get("total_return"), "pct"))
    console.print(sym)
    console.print(_per_symbol_basis(bt))
    rate = len(bt.data) / bt.seconds if bt.seconds > 0 else 0.0
    console.print(f"simulation {bt.seconds * 1e3:,.0f} ms ({rate:,.0f} ticks/s); "
                  f"total {seconds:.2f} s")
    for key, path in bt.paths.items():
        console.print(f"{key}: {path}")


# ------------------------------------------------------------------ sweeps

_SWEEP_METRICS = ("sharpe", "total_return", "trade_count", "max_drawdown", "win_rate")


def _sweep_columns(sweep: SweepSpec, short: bool = False) -> list[str]:
    splits = ["train", "test"] if sweep.walk_forward else ["all"]
    shown = _SWEEP_METRICS[:3] if short else _SWEEP_METRICS
    metrics = [sweep.metric, *(m for m in shown if m != sweep.metric)]
    return [*sweep.parameters, *(f"{s}.{m}" for s in splits for m in metrics)]


def _cell(name: str, value: Any, compact: bool = False) -> str:
    metric = name.split(".", 1)[1] if "." in name and not name.startswith(("steps.",
                                                                           "strategy.")) else ""
    if not metric:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return fmt(value, SHOWN.get(metric, ("", "num"))[1], compact)


def write_sweep(job: Any, rows: list[dict[str, Any]], sweep: SweepSpec, warning: str,
                paths: dict[str, Path]) -> dict[str, str]:
    """The ranked sweep as Parquet (every metric) and HTML (the main columns, the warning)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: [r.get(k) for r in rows] for k in names})
    _write_parquet(table, paths["sweep"], job.context.provenance())
    cols = _sweep_columns(sweep)
    body = (f"<p class=warn>{html.escape(warning)}</p><p>Sorted by "
            f"{html.escape(('train.' if sweep.walk_forward else '') + sweep.metric)}, best "
            f"first.</p>" + _table(["#", *cols], [[str(i + 1), *(_cell(c, r.get(c))
                                                                 for c in cols)]
                                                   for i, r in enumerate(rows)]))
    paths["sweep_report"].write_text(_page(f"{job.spec.name}: parameter sweep", body),
                                     encoding="utf-8")
    return {"sweep": str(paths["sweep"]), "sweep_report": str(paths["sweep_report"])}


def print_sweep(rows: list[dict[str, Any]], sweep: SweepSpec, warning: str,
                paths: dict[str, str], console: Any, seconds: float, workers: int) -> None:
    """The ranked sweep (top 20), the multiple-testing warning and where the files are."""
    from rich.table import Table

    cols = _sweep_columns(sweep, short=True)
    table = Table(title=f"sweep: {len(rows)} points, by "
                        f"{'train.' if sweep.walk_forward else ''}{sweep.metric}")
    table.add_column("#", justify="right")
    for c in cols:
        if c in sweep.parameters:
            table.add_column(c.rsplit(".", 1)[-1], justify="right", overflow="fold")
            continue
        split, metric = c.split(".", 1)
        metric = {"total_return": "return", "trade_count": "trades"}.get(metric, metric)
        table.add_column(metric if split == "all" else f"{split}\n{metric}", justify="right")
    for i, r in enumerate(rows[:20]):
        table.add_row(str(i + 1), *(_cell(c, r.get(c), compact=True) for c in cols))
    console.print(table)
    if len(rows) > 20:
        console.print(f"({len(rows) - 20} more rows in {paths['sweep']})")
    console.print(f"[yellow]warning:[/] {warning}")
    pool = sweep.pool if workers > 1 else "thread"
    console.print(f"{len(rows)} points in {seconds:.1f} s on {workers} {pool}")
    for key, path in paths.items():
        console.print(f"{key}: {path}")
