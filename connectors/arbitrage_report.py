"""``kind: arbitrage_report``: how often and how long the net edge exceeded each threshold.

Why: research on captures asks "would this have paid, and for how long?", per venue pair and
symbol. The sink reads the rows of a ``cross_venue_spread`` step (``timestamp``, ``symbol``,
``exchange``, ``exchange_b``, ``net_edge_bps``, ``is_stale``) and, per pair, symbol and
threshold, counts episodes (runs of consecutive fresh rows with net edge > threshold), their
total and longest duration (an episode lasts from its first row to the first row that ends it,
or to its last row at the end of the data) and the share of the covered time. It prints the
table, writes it as CSV, optionally plots the net edge over time per symbol with the thresholds
(PNG), and writes an interactive page beside the CSV (``.html``, :mod:`arbitrage_html`): the
episode timeline and the net edge distribution per pair and threshold.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from tickflow.connectors.base import ConnectorConfig, RunContext, Sink, sink

COLUMNS = ("timestamp", "symbol", "exchange", "exchange_b", "net_edge_bps", "is_stale")


class ArbitrageReportConfig(ConnectorConfig):
    """Episode statistics of the net edge per venue pair, symbol and threshold, with a plot."""

    kind: Literal["arbitrage_report"] = "arbitrage_report"
    path: str = Field("out/arbitrage_report.csv", description="CSV of the statistics; the "
                                                              "plot goes beside it (.png)")
    thresholds_bps: list[float] = Field([0.0, 5.0, 10.0, 20.0], min_length=1,
                                        description="net edge thresholds to report")
    plot: bool = Field(True, description="write the PNG of the net edge over time")
    html: bool = Field(True, description="write the interactive HTML report beside the CSV "
                                         "(.html): episode timeline, net edge distributions")


@dataclass
class EpisodeStats:
    """One line of the report."""

    pair: str
    symbol: str
    threshold_bps: float
    episodes: int
    total_s: float
    longest_s: float
    share: float
    rows: int


def episodes(ts_us: np.ndarray, edge: np.ndarray, stale: np.ndarray,
             threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) microsecond times of the episodes of one series in time order."""
    above = (edge > threshold) & (stale == 0)
    if not above.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # index of the row that ended it (or len)
    return ts_us[starts], ts_us[np.minimum(ends, len(ts_us) - 1)]


def episode_stats(ts_us: np.ndarray, edge: np.ndarray, stale: np.ndarray,
                  threshold: float) -> tuple[int, float, float]:
    """(episodes, total seconds, longest seconds) of one series in time order."""
    return _stats_of(*episodes(ts_us, edge, stale, threshold))


def _stats_of(start: np.ndarray, end: np.ndarray) -> tuple[int, float, float]:
    if not len(start):
        return 0, 0.0, 0.0
    durations = (end - start) / 1e6
    return len(start), float(durations.sum()), float(durations.max())


@sink("arbitrage_report", config=ArbitrageReportConfig,
      summary="how often and how long the net arbitrage edge exceeded thresholds, with a plot")
class ArbitrageReportSink(Sink):
    """Collects the few columns it needs; computes and writes everything on close."""

    config: ArbitrageReportConfig

    def __init__(self, config: ArbitrageReportConfig, context: RunContext):
        super().__init__(config, context)
        self._parts: list[pa.Table] = []
        self.stats: list[EpisodeStats] = []
        self.series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.intervals: dict[tuple[str, str, float], tuple[np.ndarray, np.ndarray]] = {}

    def required_columns(self) -> list[str]:
        return list(COLUMNS)

    def write(self, batch: pa.RecordBatch) -> None:
        self._parts.append(pa.Table.from_batches([batch]).select(list(COLUMNS)))

    def _compute(self, table: pa.Table) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        frame = table.to_pandas()
        frame["pair"] = frame["exchange"].astype(str) + "/" + frame["exchange_b"].astype(str)
        frame = frame[frame["exchange_b"].notna()]
        series = {}
        for (pair, symbol), rows in frame.groupby(["pair", "symbol"], sort=True):
            ts = rows["timestamp"].to_numpy("datetime64[us]").astype(np.int64)
            edge = rows["net_edge_bps"].to_numpy(float)
            stale = rows["is_stale"].to_numpy(np.int8)
            span = max(1.0, (ts[-1] - ts[0]) / 1e6)
            for threshold in self.config.thresholds_bps:
                start, end = episodes(ts, edge, stale, threshold)
                self.intervals[(pair, symbol, threshold)] = (start, end)
                count, total, longest = _stats_of(start, end)
                self.stats.append(EpisodeStats(pair, symbol, threshold, count, total, longest,
                                               total / span, len(ts)))
            series[(pair, symbol)] = (ts, edge)
            self.series[(pair, symbol)] = (ts, edge, stale)
        return series

    def close(self) -> str | None:
        if not self._parts:
            return "arbitrage report: no rows"
        series = self._compute(pa.concat_tables(self._parts))
        path = Path(self.config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["pair", "symbol", "threshold_bps", "episodes", "total_s",
                          "longest_s", "share_of_time", "rows"])
            for s in self.stats:
                out.writerow([s.pair, s.symbol, s.threshold_bps, s.episodes, f"{s.total_s:.3f}",
                              f"{s.longest_s:.3f}", f"{s.share:.6f}", s.rows])
        lines = ["arbitrage report: net edge above threshold, per venue pair and symbol",
                 f"{'pair':<18}{'symbol':<10}{'> bps':>7}{'episodes':>10}{'total s':>10}"
                 f"{'longest s':>11}{'share':>8}"]
        lines += [f"{s.pair:<18}{s.symbol:<10}{s.threshold_bps:>7g}{s.episodes:>10}"
                  f"{s.total_s:>10.1f}{s.longest_s:>11.2f}{s.share:>8.2%}" for s in self.stats]
        written = [str(path)]
        if self.config.plot:
            png = path.with_suffix(".png")
            _plot(series, self.config.thresholds_bps, png)
            written.append(str(png))
        if self.config.html:
            from tickflow.connectors.arbitrage_html import arbitrage_page

            page = path.with_suffix(".html")
            page.write_text(arbitrage_page(self.context.job_name or "arbitrage", self.stats,
                                           self.series, self.config.thresholds_bps,
                                           self.intervals).render(),
                            encoding="utf-8")
            written.append(str(page))
        if not self.context.quiet:
            print("\n".join(lines), flush=True)
        return f"arbitrage report: {len(self.stats)} lines -> {', '.join(written)}"


def _plot(series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
          thresholds: list[float], path: Path) -> None:
    """Net edge over time, one panel per (pair, symbol), thresholds as dashed lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(series))
    fig = Figure(figsize=(10, 2.4 * n))
    FigureCanvasAgg(fig)
    for i, ((pair, symbol), (ts, edge)) in enumerate(series.items()):
        ax = fig.add_subplot(n, 1, i + 1)
        seconds = (ts - ts[0]) / 1e6
        ax.plot(seconds, edge, linewidth=0.6)
        for threshold in thresholds:
            ax.axhline(threshold, linestyle="--", linewidth=0.6, color="grey")
        ax.set_title(f"{symbol}  {pair}", fontsize=9)
        ax.set_ylabel("net edge (bps)", fontsize=8)
        low = np.nanpercentile(edge, 1) if np.isfinite(edge).any() else -1
        ax.set_ylim(bottom=max(low, -60))
    fig.axes[-1].set_xlabel("seconds since the first row") if fig.axes else None
    fig.tight_layout()
    fig.savefig(path, dpi=90)
