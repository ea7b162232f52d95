"""The live summary page: what a live run consumed, decided and rejected, as plain data.

Why a recorder beside the executor: the live loop already hands every processed batch to its
view; the recorder takes the same three things (result, latency, lag) and keeps only bounded
counts (per symbol, per signal kind and time bucket, lag samples), so a run of days costs a few
kilobytes here. At the end of the run :meth:`LiveReportRecorder.data` adds the run's totals
(any object shaped like the live executor's ``LiveSummary``) and
:func:`tickflow.connectors.live_html.write_live_report` renders the page. Nothing here imports
the executor, so it can change freely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

MAX_LAG_SAMPLES = 4_000
MAX_BUCKETS = 5_000


@dataclass
class LiveReportData:
    """Everything the live page shows; plain values, so a test or a tool can build one."""

    job_name: str
    seconds: float = 0.0
    messages: int = 0
    ticks: int = 0
    ticks_per_symbol: dict[str, int] = field(default_factory=dict)
    signals_per_symbol: dict[str, dict[str, int]] = field(default_factory=dict)
    signal_totals: dict[str, int] = field(default_factory=dict)
    bucket_s: float = 60.0
    bucket_start_us: list[int] = field(default_factory=list)
    signals_over_time: dict[str, list[int]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    lag_at_s: list[float] = field(default_factory=list)
    lag_messages: list[int] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)
    time_basis: str = "event time"

    @classmethod
    def from_summary(cls, job_name: str, summary: Any) -> LiveReportData:
        """The run's totals alone (no per-symbol or over-time detail): from a ``LiveSummary``."""
        data = cls(job_name)
        data.add_summary(summary)
        return data

    def add_summary(self, summary: Any) -> None:
        """Take the totals of ``summary`` (ticks, messages, seconds, signal counts, dead
        letters, quality flags and latency percentiles), which are exact where ours are not."""
        self.seconds = float(getattr(summary, "seconds", 0.0))
        self.messages = int(getattr(summary, "messages", 0))
        self.ticks = int(getattr(summary, "ticks", self.ticks))
        self.signal_totals = {str(k): int(v) for k, v in
                              (getattr(summary, "signal_counts", None) or {}).items()}
        self.dead_letters = {str(k): int(v) for k, v in
                             (getattr(summary, "dead_letters", None) or {}).items()}
        self.quality = {str(k): int(v) for k, v in
                        (getattr(summary, "quality_counts", None) or {}).items()}
        percentiles = getattr(summary, "latency_percentiles_ms", None)
        pct = percentiles() if callable(percentiles) else {}
        self.latency_ms = {str(k): float(v) for k, v in pct.items() if math.isfinite(v)}


class LiveReportRecorder:
    """Bounded per-batch counts for the live page; call :meth:`update` once per batch.

    Args:
        job_name: titles the page.
        signals: the job's signal columns (int8, 1 when the signal fires).
        key: the symbol column.
        timestamp: the event-time column; signals are bucketed by it (by the wall clock when
            the output has no such column).
        bucket_s: width of a time bucket of the signals-over-time plot; doubled when a run
            spans more than ``MAX_BUCKETS`` buckets, so memory and the page stay bounded.
    """

    def __init__(self, job_name: str, signals: Sequence[str], key: str = "symbol",
                 timestamp: str = "timestamp", bucket_s: float = 60.0):
        if not bucket_s > 0:
            raise ValueError(f"bucket_s must be > 0, found {bucket_s!r}")
        self.job_name = job_name
        self.signals = list(signals)
        self.key = key
        self.timestamp = timestamp
        self.bucket_us = int(bucket_s * 1e6)
        self.ticks: dict[str, int] = {}
        self.per_symbol: dict[str, dict[str, int]] = {}
        self.buckets: dict[str, dict[int, int]] = {s: {} for s in self.signals}
        self._span: tuple[int, int] | None = None  # first and last bucket with a signal
        self.lag_at_s: list[float] = []
        self.lag: list[int] = []
        self._lag_every = 1
        self._lag_seen = 0
        self._start = time.monotonic()
        self.used_wall_clock = False

    @classmethod
    def for_job(cls, job: Any) -> LiveReportRecorder | None:
        """The recorder a compiled job asks for with ``live_report:``, or None without one."""
        from tickflow.engine.durations import duration_seconds

        spec = getattr(job.spec, "live_report", None)
        if spec is None:
            return None
        return cls(job.spec.name, list(job.signals), job.key,
                   bucket_s=duration_seconds(spec.bucket))

    def update(self, result: pa.RecordBatch, latency_us: Any = None, lag: int | None = None
               ) -> None:
        """One processed batch (the same arguments the live view takes)."""
        if lag is not None:
            self._lag_sample(int(lag))
        n = result.num_rows
        if not n or self.key not in result.schema.names:
            return
        symbols = result.column(self.key)
        enc = symbols.dictionary_encode() if not pa.types.is_dictionary(symbols.type) \
            else symbols
        names = [str(s) for s in enc.dictionary.to_pylist()]
        codes = np.asarray(enc.indices.fill_null(0).to_numpy(zero_copy_only=False),
                           dtype=np.int64)
        for name, count in zip(names, np.bincount(codes, minlength=len(names)), strict=True):
            if count:
                self.ticks[name] = self.ticks.get(name, 0) + int(count)
        bucket = self._buckets(result, n)
        for signal in self.signals:
            if signal not in result.schema.names:
                continue
            fired = np.asarray(result.column(signal).fill_null(0).to_numpy(
                zero_copy_only=False)) == 1
            if not fired.any():
                continue
            for code, count in enumerate(np.bincount(codes[fired], minlength=len(names))):
                if count:
                    row = self.per_symbol.setdefault(names[code], {})
                    row[signal] = row.get(signal, 0) + int(count)
            keys, counts = np.unique(bucket[fired], return_counts=True)
            target = self.buckets[signal]
            for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
                target[k] = target.get(k, 0) + c
            lo, hi = int(keys[0]), int(keys[-1])
            self._span = (lo, hi) if self._span is None else (min(self._span[0], lo),
                                                              max(self._span[1], hi))
        while self._span is not None and \
                (self._span[1] - self._span[0]) // self.bucket_us + 1 > MAX_BUCKETS:
            self._coarsen()

    def _buckets(self, result: pa.RecordBatch, n: int) -> np.ndarray:
        """The bucket start (µs since the epoch) of each row."""
        idx = result.schema.get_field_index(self.timestamp)
        col = result.column(idx) if idx >= 0 else None
        if col is not None and pa.types.is_timestamp(col.type):
            us = col.cast(pa.timestamp("us", tz=col.type.tz), safe=False).cast(pa.int64())
            ts = np.asarray(us.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        else:
            self.used_wall_clock = True
            ts = np.full(n, time.time_ns() // 1000, dtype=np.int64)
        return ts // self.bucket_us * self.bucket_us

    def _coarsen(self) -> None:
        self.bucket_us *= 2
        for signal, target in self.buckets.items():
            merged: dict[int, int] = {}
            for k, c in target.items():
                start = k // self.bucket_us * self.bucket_us
                merged[start] = merged.get(start, 0) + c
            self.buckets[signal] = merged
        if self._span is not None:
            lo, hi = self._span
            self._span = (lo // self.bucket_us * self.bucket_us,
                          hi // self.bucket_us * self.bucket_us)

    def _lag_sample(self, lag: int) -> None:
        # keep every k-th sample; k doubles (and the kept ones halve) when the list is full
        self._lag_seen += 1
        if (self._lag_seen - 1) % self._lag_every:
            return
        self.lag_at_s.append(time.monotonic() - self._start)
        self.lag.append(lag)
        if len(self.lag) >= MAX_LAG_SAMPLES:
            self.lag_at_s, self.lag = self.lag_at_s[::2], self.lag[::2]
            self._lag_every *= 2

    def data(self, summary: Any = None) -> LiveReportData:
        """The page's data: the recorded counts, plus the run's totals from ``summary``."""
        starts = sorted({k for b in self.buckets.values() for k in b})
        if starts:  # a continuous axis: empty buckets between the first and last are zeros
            step = self.bucket_us
            starts = list(range(starts[0], starts[-1] + step, step))
        out = LiveReportData(
            self.job_name, ticks=sum(self.ticks.values()),
            ticks_per_symbol=dict(sorted(self.ticks.items())),
            signals_per_symbol={k: dict(v) for k, v in sorted(self.per_symbol.items())},
            signal_totals={s: sum(b.values()) for s, b in self.buckets.items()},
            bucket_s=self.bucket_us / 1e6, bucket_start_us=starts,
            signals_over_time={s: [b.get(k, 0) for k in starts]
                               for s, b in self.buckets.items()},
            lag_at_s=list(self.lag_at_s), lag_messages=list(self.lag),
            time_basis="wall clock" if self.used_wall_clock else "event time")
        if summary is not None:
            out.add_summary(summary)
        return out


__all__ = ["LiveReportData", "LiveReportRecorder"]
