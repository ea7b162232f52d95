"""The columns a backtest reads, as whole arrays in time order: computed or reused.

Features come from the engine itself: the job's graph (for a one-stream job, pruned to the
steps the strategy needs) run by the same driver as every other mode, with the simulator's input
as the sink of its main stream (so a backtest sees exactly the features a live job computes,
whether the strategy reads ticks, bars or joined timeframes). A research output (Parquet
written by the engine) is reused instead when its provenance shows that the job which wrote it
computes every needed column the same way (same kernels, params and inputs, all the way up).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.engine.columns import float_column
from tickflow.engine.compile import CompiledJob
from tickflow.engine.errors import SourceError, TickflowError
from tickflow.engine.keys import KeyIndex
from tickflow.engine.runtime.pipeline import timestamp_us
from tickflow.engine.step import BoundKernel

QUOTES = ("price", "best_bid", "best_ask")


@dataclass
class MarketData:
    """Ticks of every symbol in time order, with the feature columns the rules read."""

    ts: np.ndarray                       # int64 microseconds since the epoch
    sym: np.ndarray                      # int64 symbol id, index into ``symbols``
    symbols: list[str]
    columns: dict[str, np.ndarray]       # price, best_bid, best_ask and features (float64)
    origin: str = ""
    notes: list[str] = field(default_factory=list)
    quality_counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, lo: int, hi: int) -> MarketData:
        """Rows ``lo:hi`` (views, no copy)."""
        return MarketData(self.ts[lo:hi], self.sym[lo:hi], self.symbols,
                          {k: v[lo:hi] for k, v in self.columns.items()}, self.origin,
                          self.notes)


def needed_steps(job: CompiledJob, columns: set[str]) -> list[BoundKernel]:
    """The job's steps that produce ``columns``, with everything they depend on, in order."""
    producer = {c: s for s in job.steps for c in s.output_columns}
    keep: set[str] = set()
    todo = [c for c in columns if c in producer]
    while todo:
        step = producer[todo.pop()]
        if step.step_id in keep:
            continue
        keep.add(step.step_id)
        todo.extend(c for c in step.input_columns if c in producer)
    return [s for s in job.steps if s.step_id in keep]


def _finish(ts: np.ndarray, sym: np.ndarray, symbols: list[str],
            columns: dict[str, np.ndarray], origin: str) -> MarketData:
    n = ts.shape[0]
    for name in QUOTES:
        if name not in columns:
            columns[name] = np.full(n, np.nan)
    if n and np.any(np.diff(ts) < 0):
        order = np.argsort(ts, kind="stable")  # keeps each symbol's own order for equal times
        ts, sym = ts[order], sym[order]
        columns = {k: v[order] for k, v in columns.items()}
    return MarketData(ts, sym, symbols, columns, origin)


def backtest_graph(job: CompiledJob, columns: set[str]) -> CompiledJob:
    """The job's graph as a backtest runs it: no signals, and for a one-stream job only the
    steps that make ``columns`` (a sweep point then computes no unused feature)."""
    streams = dict(job.streams)
    main = job.main_stream
    if len(streams) == 1:
        steps = needed_steps(job, columns)
        streams[main] = dataclasses.replace(streams[main], steps=steps, signals={})
    else:
        streams[main] = dataclasses.replace(streams[main], signals={})
    return dataclasses.replace(job, streams=streams, signals={},
                               steps=[s for st in streams.values() for s in st.steps])


def compute_features(job: CompiledJob, columns: set[str], workers: int = 1) -> MarketData:
    """Run the job's graph through the driver with the simulator's input as the sink of its
    main stream; keep only what the strategy reads."""
    from tickflow.engine.backtest.sink import MarketDataSink
    from tickflow.engine.runtime.driver import Driver

    graph_job = backtest_graph(job, columns)
    sink = MarketDataSink(job.key, set(columns) | set(QUOTES))
    projection = None
    if len(job.streams) == 1:  # read only the columns the steps, rules and fills need
        steps = graph_job.steps
        schema = job.source_schema
        produced = {c for s in steps for c in s.output_columns}
        want = {c for c in columns if c not in produced} | set(QUOTES)
        read = [c for c in schema.names if c in want or c in (job.key, "timestamp")
                or any(c in s.input_columns for s in steps)]
        projection = {job.sources[0].label: read}
    driver = Driver(graph_job, workers=workers, morsel_rows=job.spec.executor.morsel_rows,
                    sinks=[(sink, job.main_stream)], columns=projection)
    driver.run()
    if not sink.rows:
        raise SourceError(f"the source of job '{job.spec.name}' has no ticks to backtest")
    ts, sym, symbols, cols = sink.arrays()
    steps_text = ", ".join(s.step_id for s in graph_job.steps) or "none"
    data = _finish(ts, sym, symbols, cols,
                   f"features computed from the ticks (steps: {steps_text})")
    counts = driver.quality_counts()
    if counts:
        data.notes.append("tick quality: " + ", ".join(f"{k}={v:,}"
                                                       for k, v in sorted(counts.items())))
    data.quality_counts = counts
    return data


# ----------------------------------------------------------------- reusing a research output

def _signature(col: str, producers: dict[str, BoundKernel], seen: tuple[str, ...] = ()) -> Any:
    """How a column is made: kernel, params and the signatures of its inputs, recursively."""
    step = producers.get(col)
    if step is None or col in seen:
        return ("source", col)
    pos = step.output_columns.index(col)
    return (step.definition.name, step.params.model_dump_json(), pos,
            tuple(_signature(c, producers, (*seen, col)) for c in step.input_columns))


def _producers_of(job_path: str) -> dict[str, BoundKernel] | None:
    """Bind the steps of the job file that wrote a research output (None when it cannot)."""
    from tickflow.engine.compile import _Compiler
    from tickflow.engine.loader import load_job
    from tickflow.engine.spec import JobSpec

    try:
        loaded = load_job(job_path)
        spec = JobSpec.model_validate(loaded.data)
    except (TickflowError, ValueError):
        return None
    compiler = _Compiler(loaded)
    out: dict[str, BoundKernel] = {}
    for i, step in enumerate(spec.steps):
        bound = compiler.bind_step(i, step, [])
        if bound is None:
            return None
        for c in bound.output_columns:
            out[c] = bound
    return out


def reuse_verdict(path: str, job: CompiledJob, columns: set[str]) -> tuple[bool, str]:
    """Whether ``path`` holds ``columns`` made exactly as ``job`` makes them, and why (not)."""
    from tickflow.connectors.parquet import read_provenance

    names = set(pq.read_schema(path).names)
    ours = {c: s for s in job.steps for c in s.output_columns}
    features = sorted(c for c in columns if c in ours)
    missing = [c for c in features if c not in names]
    if missing:
        return False, f"it has no column(s) {', '.join(missing)}"
    if not features:
        return False, "the rules read no feature column"
    prov = read_provenance(path)
    job_path, sha = prov.get("job_path", ""), prov.get("job_sha256", "")
    if not prov.get("job_yaml") or not sha:
        return False, "it carries no tickflow provenance (job YAML and sha256)"
    if not job_path or not os.path.isfile(job_path):
        return False, f"the job that wrote it ({job_path or '?'}) is not here to compare"
    text = Path(job_path).read_text(encoding="utf-8")
    if hashlib.sha256(text.encode()).hexdigest() != sha:
        return False, f"{job_path} changed since it wrote the file (sha256 differs)"
    theirs = _producers_of(job_path)
    if theirs is None:
        return False, f"{job_path} no longer compiles"
    for c in features:
        if _signature(c, theirs) != _signature(c, ours):
            return False, f"column {c!r} was computed differently there"
    return True, f"job '{prov.get('job_name', '?')}' (sha256 {sha[:12]}) computed " \
                 f"{', '.join(features)} exactly as this job does"


def read_research_output(path: str, job: CompiledJob, columns: set[str],
                         verdict: str) -> MarketData:
    """Read the needed columns of a research output whose features are reusable."""
    names = pq.read_schema(path).names
    want = [c for c in ("timestamp", job.key, *QUOTES, *sorted(columns))
            if c in names]
    table = pq.read_table(path, columns=list(dict.fromkeys(want)))
    if not table.num_rows:
        raise SourceError(f"{path!r} has no rows to backtest")
    keys = KeyIndex()
    batch = pa.RecordBatch.from_arrays([table.column("timestamp").combine_chunks()],
                                       names=["timestamp"])
    cols = {c: float_column(table.column(c)) for c in want if c not in ("timestamp", job.key)}
    return _finish(timestamp_us(batch), keys.encode(table.column(job.key)),
                   [str(v) for v in keys.values], cols,
                   f"features reused from {path}: {verdict}")


def raw_tick_columns(path: str) -> list[str]:
    """Columns of a Parquet file that belong to the canonical tick schema (the raw input)."""
    names = pq.read_schema(path).names
    return [c for c in names if c in CANONICAL_TICK_SCHEMA.names]
