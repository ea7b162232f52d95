"""What :func:`tickflow.run` and :func:`tickflow.backtest` return: tables first, files optional.

Both show a short summary as HTML in Jupyter (``_repr_html_``) and as text elsewhere.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import pandas
    import polars


def _head_html(table: pa.Table, rows: int = 5, columns: int = 12) -> str:
    names = table.column_names[:columns]
    more = f" … {table.num_columns - columns} more" if table.num_columns > columns else ""
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for row in table.slice(0, rows).select(names).to_pylist():
        cells = "".join(f"<td>{html.escape(_fmt(row[n]))}</td>" for n in names)
        body.append(f"<tr>{cells}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            + (f"<p><small>{html.escape(more)} columns</small></p>" if more else ""))


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pairs_html(pairs: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td>{html.escape(_fmt(v))}</td></tr>" for k, v in pairs.items())
    return f"<table>{rows}</table>"


@dataclass
class Result:
    """The output of one run: the main stream as an Arrow table, counts and sink summaries."""

    job_name: str
    table: pa.Table
    rows_in: int = 0
    seconds: float = 0.0
    signal_counts: dict[str, int] = field(default_factory=dict)
    sink_summaries: list[str] = field(default_factory=list)
    quality_counts: dict[str, int] = field(default_factory=dict)  # rows the quality stage took

    def to_pandas(self) -> pandas.DataFrame:
        return self.table.to_pandas()

    def to_polars(self) -> polars.DataFrame:
        import polars

        frame = polars.from_arrow(self.table)
        assert isinstance(frame, polars.DataFrame)
        return frame

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v:,}" for k, v in self.signal_counts.items()) or "none"
        return (f"<Result of job '{self.job_name}': {self.table.num_rows:,} rows x "
                f"{self.table.num_columns} columns in {self.seconds:.2f} s; signals: {counts}>")

    def _repr_html_(self) -> str:
        facts = {"rows": f"{self.table.num_rows:,}", "columns": self.table.num_columns,
                 "seconds": f"{self.seconds:.2f}",
                 **{f"signal {k}": f"{v:,}" for k, v in self.signal_counts.items()}}
        sinks = "".join(f"<li>{html.escape(s)}</li>" for s in self.sink_summaries)
        return (f"<h4>tickflow result: {html.escape(self.job_name)}</h4>{_pairs_html(facts)}"
                + (f"<ul>{sinks}</ul>" if sinks else "") + _head_html(self.table))


@dataclass
class BacktestResult:
    """A backtest: its metrics (a mapping), trades and equity tables, and the HTML report."""

    job_name: str
    metrics: dict[str, float]
    benchmark_metrics: dict[str, float]
    per_symbol: dict[str, dict[str, float]]
    trades: pa.Table
    equity: pa.Table
    seconds: float
    paths: dict[str, str]
    _engine: Any = field(repr=False, default=None)

    def report(self, path: str) -> str:
        """Write the HTML report (the same page ``run-job`` writes) and return its path."""
        from tickflow import _engine_bridge as bridge

        written = bridge.write_backtest_report(self._engine, path)
        self.paths["report"] = written
        return written

    def trades_pandas(self) -> pandas.DataFrame:
        return self.trades.to_pandas()

    def equity_pandas(self) -> pandas.DataFrame:
        return self.equity.to_pandas()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(self.metrics.items())[:6])
        return (f"<BacktestResult of job '{self.job_name}': {self.trades.num_rows:,} trades; "
                f"{shown}>")

    def _repr_html_(self) -> str:
        keys = list(self.metrics)
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td>{html.escape(_fmt(self.metrics[k]))}</td>"
            f"<td>{html.escape(_fmt(self.benchmark_metrics.get(k, '')))}</td></tr>"
            for k in keys)
        return (f"<h4>tickflow backtest: {html.escape(self.job_name)}</h4>"
                f"<p>{self.trades.num_rows:,} trades, {self.equity.num_rows:,} equity points, "
                f"{self.seconds:.2f} s</p><table><thead><tr><th>metric</th><th>strategy</th>"
                f"<th>buy and hold</th></tr></thead><tbody>{rows}</tbody></table>")
