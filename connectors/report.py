"""``kind: report``: the research summary of a run, built while the batches stream past.

Any columns: only the symbol and timestamp columns are required. Every other numeric column is
a feature: its count, missing share, mean, standard deviation, range and quantiles are
reported, with the correlations between features and their distributions (from a uniform
sample of rows, :mod:`feature_stats`). Per symbol, when the columns exist: observations (rows),
mean return, volatility (sample standard deviation of the returns), mean RSI, mean L1
imbalance (NaN and null values ignored) and the number of regime changes (sum of the alarm
column). Across symbols, when there is a price column: the Pearson correlation matrix of log returns
on a common time grid, as pandas would compute it with
``prices.resample(grid).last().ffill()``, ``np.log(p).diff()``, ``.corr()`` (pairwise complete).

Nothing holds all rows: the per-symbol moments are merged batch by batch (Chan et al.'s parallel
update), and for the correlations only the last price of each (symbol, grid bucket) is kept,
so memory grows with the number of buckets, not of rows. Grid buckets are aligned to the Unix
epoch (the same as pandas' default for any grid that divides a day).

On ``close`` the tables are printed with rich (unless the run is quiet), and when ``path`` is set
the report is written there: interactive, self-contained HTML (:mod:`research_html`), or
Markdown with a PNG heatmap ``<stem>_correlation.png`` beside it.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from tickflow.connectors.base import ConnectorConfig, RunContext, Sink, sink
from tickflow.connectors.feature_stats import FeatureStats, SampleColumns
from tickflow.connectors.research_math import (
    Moments,
    ffill,
    floats,
    is_numeric,
    last_per_key,
    mean_offdiag,
    numbers,
    pairwise_corr,
    strings,
    to_dt,
    valid_mask,
)
from tickflow.engine.durations import parse_duration_us
from tickflow.engine.errors import SinkError

_MAX_GRID_CELLS = 25_000_000   # buckets x symbols beyond which correlations are skipped

STAT_NAMES = ("observations", "mean_return", "volatility", "mean_rsi", "mean_imbalance",
              "regime_changes")


def parse_grid_us(text: str) -> int:
    """'1s' -> 1_000_000 (microseconds); ValueError for anything that is not a duration > 0."""
    return parse_duration_us(text)


class ResearchReportConfig(ConnectorConfig):
    """Per-symbol statistics and the cross-symbol correlation matrix of a research run."""

    kind: Literal["report"] = "report"
    path: str | None = Field(None, description="report file, .html (interactive, "
                                               "self-contained) or .md (with a PNG heatmap "
                                               "<stem>_correlation.png beside it). Without a "
                                               "path the tables are only printed")
    grid: str = Field("1s", description="time grid on which prices are sampled (last price "
                                        "per bucket, carried forward) for the correlations")
    symbol: str = Field("symbol", min_length=1, description="symbol column")
    timestamp: str = Field("timestamp", min_length=1, description="timestamp column")
    price: str = Field("price", min_length=1, description="price column (for correlations)")
    returns: str = Field("log_return", min_length=1, description="column of per-tick returns")
    rsi: str = Field("rsi", min_length=1, description="RSI column")
    imbalance: str = Field("l1_imbalance", min_length=1, description="L1 imbalance column")
    alarm: str = Field("cusum_alarm", min_length=1,
                       description="regime-change alarm column (0/1); its sum is reported")

    @field_validator("path")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() not in (".html", ".htm", ".md"):
            raise ValueError(f"the report path must end in .html or .md, found {value!r}")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        parse_grid_us(value)
        return value


@sink("report", config=ResearchReportConfig,
      summary="research summary: per-symbol stats, correlation matrix, HTML/Markdown + heatmap")
class ResearchReportSink(Sink):
    """Accumulates per-symbol statistics and grid prices; writes the report on close."""

    config: ResearchReportConfig

    def __init__(self, config: ResearchReportConfig, context: RunContext):
        super().__init__(config, context)
        self.grid_us = parse_grid_us(config.grid)
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._rows = np.zeros(0, dtype=np.int64)
        self._ret = Moments()
        self._rsi_sum = np.zeros(0)
        self._rsi_n = np.zeros(0, dtype=np.int64)
        self._imb_sum = np.zeros(0)
        self._imb_n = np.zeros(0, dtype=np.int64)
        self._alarms = np.zeros(0)
        self._ts_min: int | None = None
        self._ts_max: int | None = None
        self._total = 0
        # last price per (symbol code, bucket): parts appended per batch, compacted now and then
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._parts_len = 0
        self._compacted_len = 0
        self._results: dict[str, Any] | None = None
        self._page: str | None = None  # the HTML page, rendered by prepare_close
        self._features = FeatureStats()
        self._sampled = SampleColumns({config.symbol, config.timestamp})
        self._present: set[str] = set()
        self._warm: threading.Thread | None = None
        self._known: pa.Array | None = None  # self._names, for lookups by pc.index_in

    def __getstate__(self) -> dict[str, Any]:
        """Picklable without the import thread: a Dask task sends its sink back to merge."""
        state = self.__dict__.copy()
        state["_warm"] = None
        return state

    def merge(self, other: ResearchReportSink) -> None:
        """Add what ``other`` accumulated, as if its batches had been written after ours.

        A distributed run feeds one sink per key partition and merges them on the client,
        instead of reading the whole output back (moments by Chan et al.'s parallel update).
        """
        self._results = self._page = None
        size = len(self._names)
        for name in other._names:
            if name not in self._index:
                self._index[name] = len(self._names)
                self._names.append(name)
        if len(self._names) > size:  # grow every per-code array (as _codes does)
            self._codes(strings(self._names[size:]))
        lut = np.asarray([self._index[n] for n in other._names], dtype=np.int64)
        if not len(lut):
            return
        self._rows[lut] += other._rows
        for mine, theirs in ((self._rsi_sum, other._rsi_sum), (self._rsi_n, other._rsi_n),
                             (self._imb_sum, other._imb_sum), (self._imb_n, other._imb_n),
                             (self._alarms, other._alarms)):
            mine[lut] += theirs
        a, b = self._ret, other._ret
        na, nb = a.n[lut], b.n
        n = na + nb
        delta = b.mean - a.mean[lut]
        with np.errstate(invalid="ignore", divide="ignore"):
            a.mean[lut] = np.where(nb > 0, a.mean[lut] + delta * np.where(n > 0, nb / n, 0.0),
                                   a.mean[lut])
            a.m2[lut] = np.where(nb > 0, a.m2[lut] + b.m2 + delta * delta * na * nb / n,
                                 a.m2[lut])
        a.n[lut] = n
        for lo_hi, pick in (("_ts_min", min), ("_ts_max", max)):
            theirs = getattr(other, lo_hi)
            if theirs is not None:
                mine = getattr(self, lo_hi)
                setattr(self, lo_hi, theirs if mine is None else pick(mine, theirs))
        self._total += other._total
        self._present |= other._present
        self._features.merge(other._features, lut)
        for c, bucket, p in other._parts:
            self._parts.append((lut[c], bucket, p))
            self._parts_len += len(c)

    def open(self, schema: pa.Schema) -> None:
        """Start importing Bokeh on a thread when an HTML page will be written with it.

        Why: the page is written without Bokeh when the installed version is the one its
        JSON was checked against; otherwise the import is most of the page's cost, and needs
        nothing from the run: done while the run computes it overlaps, in ``close`` it would
        be added to the end of the run in full.
        """
        path = self.config.path
        if path is not None and Path(path).suffix.lower() != ".md" and self._warm is None:
            from tickflow.connectors.research_html import import_page_modules, needs_bokeh

            if not needs_bokeh():
                return

            self._warm = threading.Thread(target=import_page_modules, daemon=True,
                                          name="tickflow-report-import")
            self._warm.start()

    def required_columns(self) -> list[str]:
        """Only the symbol and timestamp: every other column is optional (used if present)."""
        return list(dict.fromkeys([self.config.symbol, self.config.timestamp]))

    # ------------------------------------------------------------------ streaming

    def _codes(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        if self._known is not None and not col.null_count and pa.types.is_string(col.type):
            # the usual case, every symbol seen before: a lookup is cheaper than an encoding
            found = pc.index_in(col, value_set=self._known)
            if not found.null_count:
                return numbers(found, np.int64)
        if col.null_count:
            col = pc.fill_null(col.cast(pa.string()) if pa.types.is_dictionary(col.type)
                               else col, "<null>")
        enc = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.combine_chunks()
        lut = np.empty(len(enc.dictionary), dtype=np.int64)
        for i, name in enumerate(enc.dictionary.to_pylist()):
            name = str(name)
            code = self._index.get(name)
            if code is None:
                code = self._index[name] = len(self._names)
                self._names.append(name)
            lut[i] = code
        size = len(self._names)
        if len(self._rows) < size:
            extra = size - len(self._rows)
            self._rows = np.concatenate([self._rows, np.zeros(extra, dtype=np.int64)])
            self._rsi_sum = np.concatenate([self._rsi_sum, np.zeros(extra)])
            self._rsi_n = np.concatenate([self._rsi_n, np.zeros(extra, dtype=np.int64)])
            self._imb_sum = np.concatenate([self._imb_sum, np.zeros(extra)])
            self._imb_n = np.concatenate([self._imb_n, np.zeros(extra, dtype=np.int64)])
            self._alarms = np.concatenate([self._alarms, np.zeros(extra)])
            self._ret.grow(size)
        self._known = strings(self._names)
        return lut[numbers(enc.indices, np.int64)]

    def _column(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        idx = batch.schema.get_field_index(name)
        if idx < 0:
            raise SinkError(f"report sink: the output has no column {name!r} "
                            f"(columns: {', '.join(batch.schema.names)})")
        return batch.column(idx)

    def _optional(self, batch: pa.RecordBatch, name: str) -> np.ndarray | None:
        idx = batch.schema.get_field_index(name)
        if idx < 0:
            return None
        col = batch.column(idx)
        if not is_numeric(col.type):
            return None
        self._present.add(name)
        return floats(col)

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        cfg = self.config
        self._results = self._page = None
        codes = self._codes(self._column(batch, cfg.symbol))
        size = len(self._names)
        self._total += batch.num_rows
        rows = np.bincount(codes, minlength=size)
        self._rows += rows
        ret = self._optional(batch, cfg.returns)
        if ret is not None:
            self._ret.add(codes, ret, size, rows)
        for name, sums, counts in ((cfg.rsi, self._rsi_sum, self._rsi_n),
                                   (cfg.imbalance, self._imb_sum, self._imb_n),
                                   (cfg.alarm, self._alarms, None)):
            x = self._optional(batch, name)
            if x is None:
                continue
            ok = ~np.isnan(x)
            if ok.all():  # past the warm-up: no masking, and the counts are the rows
                sums += np.bincount(codes, weights=x, minlength=size)
                if counts is not None:
                    counts += rows
                continue
            sums += np.bincount(codes[ok], weights=x[ok], minlength=size)
            if counts is not None:
                counts += np.bincount(codes[ok], minlength=size)
        price = self._optional(batch, cfg.price)
        ts_col = self._column(batch, cfg.timestamp)
        self._add_prices(codes, ts_col, price if price is not None
                         else np.full(batch.num_rows, np.nan))
        take, keys = self._features.draw(batch.num_rows)
        if len(take):  # only the rows entering the sample are converted
            self._features.add(keys, *self._sampled.rows(batch, take), codes[take])

    def _add_prices(self, codes: np.ndarray, ts_col: pa.Array, price: np.ndarray) -> None:
        if not pa.types.is_timestamp(ts_col.type):
            raise SinkError(f"report sink: column {self.config.timestamp!r} is not a "
                            f"timestamp ({ts_col.type})")
        ts_arr = ts_col.cast(pa.timestamp("us", tz=ts_col.type.tz), safe=False).cast(pa.int64())
        ts_ok = None  # None: every timestamp is set (the usual case, no masking)
        if isinstance(ts_arr, pa.ChunkedArray):
            ts_arr = ts_arr.combine_chunks()
        if ts_arr.null_count:
            ts_ok = valid_mask(ts_arr)
            ts = np.where(ts_ok, np.frombuffer(ts_arr.buffers()[1], dtype=np.int64,
                                               count=len(ts_arr), offset=ts_arr.offset * 8), 0)
        else:
            ts = numbers(ts_arr, np.int64)
        valid = ts if ts_ok is None else ts[ts_ok]
        if len(valid):
            lo, hi = int(valid.min()), int(valid.max())
            self._ts_min = lo if self._ts_min is None else min(self._ts_min, lo)
            self._ts_max = hi if self._ts_max is None else max(self._ts_max, hi)
        ok = np.isfinite(price) & (price > 0)
        if ts_ok is not None:
            ok &= ts_ok
        if ok.all():
            c, b, p = codes, ts // self.grid_us, price
        elif ok.any():
            c, b, p = codes[ok], ts[ok] // self.grid_us, price[ok]
        else:
            return
        c, b, p = last_per_key(c, b, p)
        self._parts.append((c, b, p))
        self._parts_len += len(c)
        if self._parts_len > 2 * self._compacted_len + 1_000_000:
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) > 1:
            c, b, p = (np.concatenate(x) for x in zip(*self._parts, strict=True))
            self._parts = [last_per_key(c, b, p)]
        self._parts_len = self._compacted_len = sum(len(x[0]) for x in self._parts)

    # ------------------------------------------------------------------ results

    def results(self) -> dict[str, Any]:
        """The statistics so far: ``symbols`` (sorted), ``stats`` {symbol: {stat: value}},
        ``correlation`` (numpy matrix in ``symbols`` order, or None), ``grid``,
        ``grid_points``, ``rows``, ``start``/``end`` (datetimes or None), ``note``,
        ``shown_stats`` (the per-symbol statistics whose columns exist), ``features``
        {column: statistics} and ``sample`` (sampled feature rows, for correlations and
        distributions)."""
        if self._results is not None:
            return self._results
        order = sorted(range(len(self._names)), key=lambda i: self._names[i])
        symbols = [self._names[i] for i in order]
        stats: dict[str, dict[str, float | int]] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            vol = np.where(self._ret.n > 1, np.sqrt(np.maximum(self._ret.m2, 0.0)
                                                    / (self._ret.n - 1)), np.nan)
            mean_ret = np.where(self._ret.n > 0, self._ret.mean, np.nan)
            mean_rsi = np.where(self._rsi_n > 0, self._rsi_sum / self._rsi_n, np.nan)
            mean_imb = np.where(self._imb_n > 0, self._imb_sum / self._imb_n, np.nan)
        for i in order:
            stats[self._names[i]] = {
                "observations": int(self._rows[i]), "mean_return": float(mean_ret[i]),
                "volatility": float(vol[i]), "mean_rsi": float(mean_rsi[i]),
                "mean_imbalance": float(mean_imb[i]),
                "regime_changes": round(float(self._alarms[i]))}
        corr, points, note = self._correlation(order)
        cfg = self.config
        column_of = {"mean_return": cfg.returns, "volatility": cfg.returns,
                     "mean_rsi": cfg.rsi, "mean_imbalance": cfg.imbalance,
                     "regime_changes": cfg.alarm}
        shown = ["observations", *(k for k, col in column_of.items() if col in self._present)]
        sample, _ = self._features.sample()
        self._results = {"symbols": symbols, "stats": stats, "correlation": corr,
                         "grid": cfg.grid, "grid_points": points, "rows": self._total,
                         "start": to_dt(self._ts_min), "end": to_dt(self._ts_max), "note": note,
                         "shown_stats": shown, "features": self._features.table(),
                         "sample": sample}
        return self._results

    def _correlation(self, order: list[int]) -> tuple[np.ndarray | None, int, str]:
        if not self._parts:
            return None, 0, "no prices to correlate"
        self._compact()
        c, b, p = self._parts[0]
        b0 = int(b.min())
        points = int(b.max()) - b0 + 1
        nsym = len(order)
        if points * nsym > _MAX_GRID_CELLS:
            return None, points, (f"correlations skipped: {points:,} grid points x {nsym} "
                                  f"symbols is too fine a grid; use a coarser `grid`")
        col_of = np.empty(len(self._names), dtype=np.int64)
        col_of[np.asarray(order, dtype=np.int64)] = np.arange(nsym)
        prices = np.full((points, nsym), np.nan)
        prices[b - b0, col_of[c]] = p
        return pairwise_corr(np.diff(np.log(ffill(prices)), axis=0)), points, ""

    # ------------------------------------------------------------------ output

    def prepare_close(self) -> None:
        """What :meth:`close` computes, writing nothing: the statistics and the HTML page. A
        run calls it on this sink's writer thread after the last batch, while the Parquet
        writer finishes its last row groups (engine/runtime/pipeline.py ``Writer.end``)."""
        if self._warm is not None:
            self._warm.join()
        res = self.results()
        if self.config.path is not None:
            from tickflow.connectors.research_html import render_page

            self._page = render_page(res, self.context, self.config)

    def close(self) -> str | None:
        if self._warm is not None:
            self._warm.join()
        res = self.results()
        report_path = None
        if self.config.path is not None:
            from tickflow.connectors.research_html import write_report

            report_path = write_report(res, self.context, self.config, rendered=self._page)
        if not self.context.quiet:
            from tickflow.connectors.research_html import print_tables

            print_tables(res, self.context)
        corr = res["correlation"]
        mean_corr = mean_offdiag(corr)
        where = f" -> {report_path}" if report_path else ""
        extra = f", mean pairwise correlation {mean_corr:.2f}" if not math.isnan(mean_corr) else ""
        return (f"report: {len(res['symbols'])} symbols, {res['rows']:,} rows, "
                f"{len(res['features'])} features{extra}{where}")


__all__ = ["ResearchReportConfig", "ResearchReportSink", "pairwise_corr", "parse_grid_us"]
