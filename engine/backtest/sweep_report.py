"""Sweep outputs: the ranked rows as Parquet, an interactive HTML page, the terminal table.

The page shows the multiple-testing warning, a heatmap of the ranking metric over two
parameters (best value over the other parameters) and, for walk-forward sweeps, in-sample
against out-of-sample per point. Metric cells use the same formatting as the backtest report
(:mod:`summary`): on samples too short to annualise, the period figures are shown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.summary import LABELS, fmt, metric_text, shown_name

if TYPE_CHECKING:
    from tickflow.connectors.reporting.page import Page

_SWEEP_METRICS = ("sharpe", "total_return", "trade_count", "max_drawdown", "win_rate")
LOWER_IS_BETTER = {"volatility", "period_volatility", "max_drawdown_duration_s", "fees_paid",
                   "turnover"}  # as the sweep ranks them


def _splits(sweep: SweepSpec) -> list[str]:
    return ["train", "test"] if sweep.walk_forward else ["all"]


def _metrics_of(row: dict[str, Any], split: str) -> dict[str, Any]:
    prefix = f"{split}."
    return {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}


def _shown(sweep: SweepSpec, rows: list[dict[str, Any]], short: bool = False) -> list[str]:
    """The metric names of the table: the ranking metric first, period figures on short
    samples."""
    sample = next((_metrics_of(r, _splits(sweep)[0]) for r in rows if "error" not in r), {})
    shown = _SWEEP_METRICS[:3] if short else _SWEEP_METRICS
    names = [sweep.metric, *(m for m in shown if m != sweep.metric)]
    return [shown_name(n, sample) for n in names]


def _columns(sweep: SweepSpec, rows: list[dict[str, Any]], short: bool = False) -> list[str]:
    return [*sweep.parameters, *(f"{s}.{m}" for s in _splits(sweep)
                                 for m in _shown(sweep, rows, short))]


def _param_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(sweep: SweepSpec, row: dict[str, Any], col: str, compact: bool = False) -> str:
    if col in sweep.parameters:
        return _param_text(row.get(col))
    if "error" in row:
        return "failed"
    split, metric = col.split(".", 1)
    return metric_text(metric, _metrics_of(row, split), compact)


def _write_parquet(table: pa.Table, path: Path, provenance: dict[str, str]) -> None:
    from tickflow.connectors.parquet_writer import write_parquet_table

    write_parquet_table(table, path, provenance)


def write_sweep(job: Any, rows: list[dict[str, Any]], sweep: SweepSpec, warning: str,
                paths: dict[str, Path]) -> dict[str, str]:
    """The ranked sweep as Parquet (every metric) and HTML (table, heatmap, in/out of sample)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: [r.get(k) for r in rows] for k in names})
    _write_parquet(table, paths["sweep"], job.context.provenance())
    paths["sweep_report"].parent.mkdir(parents=True, exist_ok=True)
    paths["sweep_report"].write_text(sweep_html(f"{job.spec.name}: parameter sweep", rows,
                                                sweep, warning), encoding="utf-8")
    return {"sweep": str(paths["sweep"]), "sweep_report": str(paths["sweep_report"])}


def sweep_html(title: str, rows: list[dict[str, Any]], sweep: SweepSpec, warning: str) -> str:
    """The sweep page from plain rows (parameters and ``split.metric`` columns)."""
    from tickflow.connectors.reporting.page import Page

    page = Page(title, warnings=[warning])
    split = "train" if sweep.walk_forward else "all"
    ok = [r for r in rows if "error" not in r]
    metric = shown_name(sweep.metric, _metrics_of(ok[0], split) if ok else {})
    if len(sweep.parameters) >= 2 and ok:
        _heatmap(page, ok, sweep, split, metric)
    if sweep.walk_forward and ok:
        _in_vs_out(page, ok, sweep, metric)
    cols = _columns(sweep, rows)
    sec = page.section("Ranked points")
    sec.text(f"Sorted by {split}.{sweep.metric}, best first.")
    sec.table(["#", *cols], [[str(i + 1), *(_cell(sweep, r, c) for c in cols)]
                             for i, r in enumerate(rows)])
    return page.render()


def _value(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def _heatmap(page: Page, rows: list[dict[str, Any]], sweep: SweepSpec, split: str,
             metric: str) -> None:
    from tickflow.connectors.reporting.plots import heatmap

    px, py, *rest = list(sweep.parameters)
    xs = sorted({r[px] for r in rows})
    ys = sorted({r[py] for r in rows})
    grid = np.full((len(ys), len(xs)), np.nan)
    sign = 1.0 if sweep.metric in LOWER_IS_BETTER else -1.0
    for r in rows:
        v = _value(r, f"{split}.{metric}")
        if math.isnan(v):
            continue
        i, j = ys.index(r[py]), xs.index(r[px])
        if math.isnan(grid[i, j]) or sign * v < sign * grid[i, j]:
            grid[i, j] = v  # the best over the other parameters
    sec = page.section(f"{split}.{metric} over {px} and {py}")
    label = LABELS.get(metric, (metric, "num"))
    if rest:
        sec.text(f"Each cell is the best over the other parameters ({', '.join(rest)}).",
                 css="note")
    scale = 100.0 if label[1] == "pct" else 1.0
    sec.plot("sweep_heatmap", heatmap([_param_text(x) for x in xs],
                                      [_param_text(y) for y in ys], grid * scale,
                                      f"{split}.{label[0]}{' (%)' if scale != 1 else ''}",
                                      label[0], symmetric=label[1] != "int", width=900))


def _in_vs_out(page: Page, rows: list[dict[str, Any]], sweep: SweepSpec, metric: str) -> None:
    from bokeh.models import ColumnDataSource, Slope

    from tickflow.connectors.reporting.plots import hover, plain_figure

    label = LABELS.get(metric, (metric, "num"))[0]
    train = np.array([_value(r, f"train.{metric}") for r in rows])
    test = np.array([_value(r, f"test.{metric}") for r in rows])
    keep = np.isfinite(train) & np.isfinite(test)
    sec = page.section("In-sample against out-of-sample")
    params = [", ".join(f"{k}={_param_text(r[k])}" for k in sweep.parameters) for r in rows]
    src = ColumnDataSource({"train": train[keep], "test": test[keep],
                            "params": [p for p, k in zip(params, keep, strict=True) if k],
                            "rank": (np.flatnonzero(keep) + 1).tolist()})
    fig = plain_figure(f"{label}: train (in-sample) against test (out-of-sample)",
                       f"train {label}", f"test {label}", height=450, width=650)
    fig.scatter("train", "test", source=src, size=8, alpha=0.7)
    fig.add_layout(Slope(gradient=1, y_intercept=0, line_dash="dashed", line_color="#999"))
    hover(fig, [("rank", "@rank"), ("params", "@params"), ("train", "@train{0.000}"),
                ("test", "@test{0.000}")])
    if keep.sum() > 2:
        corr = float(np.corrcoef(train[keep], test[keep])[0, 1])
        sec.text(f"The Pearson correlation of train and test "
                 f"{label} over {int(keep.sum())} points is "
                 f"{fmt(corr, 'num')}: near zero means the in-sample ranking did not carry "
                 f"over. Points on the dashed line did as well out of sample as in.",
                 css="note")
    sec.plot("in_vs_out", fig)


def print_sweep(rows: list[dict[str, Any]], sweep: SweepSpec, warning: str,
                paths: dict[str, str], console: Any, seconds: float, workers: int) -> None:
    """The ranked sweep (top 20), the multiple-testing warning and where the files are."""
    from rich.table import Table

    cols = _columns(sweep, rows, short=True)
    table = Table(title=f"sweep: {len(rows)} points, by "
                        f"{'train.' if sweep.walk_forward else ''}{sweep.metric}")
    table.add_column("#", justify="right")
    for c in cols:
        if c in sweep.parameters:
            table.add_column(c.rsplit(".", 1)[-1], justify="right", overflow="fold")
            continue
        split, metric = c.split(".", 1)
        metric = {"total_return": "return", "trade_count": "trades",
                  "period_sharpe": "Sharpe (period)"}.get(metric, metric)
        table.add_column(metric if split == "all" else f"{split}\n{metric}", justify="right")
    for i, r in enumerate(rows[:20]):
        table.add_row(str(i + 1), *(_cell(sweep, r, c, compact=True) for c in cols))
    console.print(table)
    if len(rows) > 20:
        console.print(f"({len(rows) - 20} more rows in {paths['sweep']})")
    console.print(f"[yellow]warning:[/] {warning}")
    pool = sweep.pool if workers > 1 else "thread"
    console.print(f"{len(rows)} points in {seconds:.1f} s on {workers} {pool}")
    for key, path in paths.items():
        console.print(f"{key}: {path}")
