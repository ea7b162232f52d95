"""The stream graph at run time: routes batches from sources through kernel segments,
operators and sinks (the plan is in ``engine/streams.py``).

Sources are read ahead on threads and merged by time at batch granularity: the next batch
comes from the source whose waiting batch starts earliest, so the streams an ``asof_join``
merges stay close in time and little is buffered. Each stream with kernel steps runs them in a
:class:`~engine.executors.local.Pipeline` (keyed state sharded over worker lanes, as in a
single-stream job). Operators receive every batch of the streams they read, and their output
batches are routed on at once, depth first. When a stream ends, its readers are told, and an
operator whose inputs have all ended flushes and ends its own stream.

Operators may also promise a *watermark* (no future row of their output is earlier than it),
which lets an as-of join finalise rows without waiting for the next bar to be emitted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from tickflow.engine.compile import CompiledJob
from tickflow.engine.executors.local import Pipeline, RunSummary, _prefetch, _Writer
from tickflow.engine.operators.base import Operator, timestamps_us


class StreamGraph:
    """Every stream's pipeline, operator and writers, wired by stream name."""

    def __init__(self, job: CompiledJob, workers: int = 1):
        self.job = job
        self.pipelines: dict[str, Pipeline] = {}
        self.operators: dict[str, Operator] = {}
        self.readers: dict[str, list[tuple[str, str]]] = {n: [] for n in job.streams}
        self.open_ports: dict[str, set[str]] = {}
        for name, stream in job.streams.items():
            if stream.steps or stream.signals:
                sub = dataclasses.replace(job, steps=stream.steps, signals=stream.signals,
                                          key=stream.key, streams={})
                self.pipelines[name] = Pipeline(sub, workers)
            op = stream.operator
            if op is not None:
                self.operators[name] = op.make()
                self.open_ports[name] = set(op.streams)
                for port, source in op.streams.items():
                    self.readers[source].append((name, port))
        self.writers: dict[str, _Writer] = {}
        self.schemas: dict[str, pa.Schema] = {}

    def bind(self, source_schemas: dict[str, pa.Schema]) -> dict[str, pa.Schema]:
        """Every stream's output schema, from the sources' schemas, in creation order."""
        for name, stream in self.job.streams.items():
            if stream.is_source:
                raw = source_schemas[name]
            else:
                op = self.operators[name]
                raw = op.bind({port: self.schemas[s] for port, s in
                               stream.origin.streams.items()})
            pipeline = self.pipelines.get(name)
            if pipeline is not None:  # a throwaway one-lane pipeline: state stays untouched
                probe = Pipeline(pipeline.job, 1)
                raw = probe.process(pa.RecordBatch.from_pylist([], schema=raw)).schema
                probe.close()
            self.schemas[name] = raw
        return self.schemas

    def attach(self, name: str, writer: _Writer) -> None:
        self.writers[name] = writer

    def emit(self, name: str, batch: pa.RecordBatch) -> None:
        """A batch of stream ``name`` before its kernel steps: compute, write, pass on."""
        if batch.num_rows == 0:
            return
        pipeline = self.pipelines.get(name)
        out = pipeline.process(batch) if pipeline is not None else batch
        writer = self.writers.get(name)
        if writer is not None:
            writer.put(out)
        for reader, port in self.readers[name]:
            for produced in self.operators[reader].push(port, out):
                self.emit(reader, produced)

    def advance(self) -> None:
        """Pass operators' watermarks to the operators reading their streams."""
        for name, op in self.operators.items():
            mark = op.watermark()
            if mark is None:
                continue
            for reader, port in self.readers[name]:
                for produced in self.operators[reader].advance(port, mark):
                    self.emit(reader, produced)

    def end(self, name: str) -> None:
        """Stream ``name`` has no more rows: its readers flush what they can."""
        for reader, port in self.readers[name]:
            for produced in self.operators[reader].end(port):
                self.emit(reader, produced)
            self.open_ports[reader].discard(port)
            if not self.open_ports[reader]:
                self.end(reader)

    def close(self) -> None:
        for p in self.pipelines.values():
            p.close()

    @property
    def signal_counts(self) -> dict[str, int]:
        main = self.pipelines.get(self.job.main_stream)
        return dict(main.signal_counts) if main is not None else {}


def _first_time(batch: pa.RecordBatch) -> int:
    if "timestamp" not in batch.schema.names or batch.num_rows == 0:
        return 0
    values, _ = timestamps_us(batch.column("timestamp").slice(0, 1))
    return int(values[0])


def merged(sources: dict[str, Iterator[pa.RecordBatch]]) -> Iterator[tuple[str, Any]]:
    """(stream, batch) in time order of the batches' first rows, then (stream, None) when a
    source ends. Ties go to the source listed first."""
    heads: dict[str, pa.RecordBatch] = {}
    order = list(sources)
    for name in order:
        batch = next(sources[name], None)
        if batch is None:
            yield name, None
        else:
            heads[name] = batch
    while heads:
        name = min(heads, key=lambda n: (_first_time(heads[n]), order.index(n)))
        yield name, heads[name]
        nxt = next(sources[name], None)
        if nxt is None:
            del heads[name]
            yield name, None
        else:
            heads[name] = nxt


def run_streams(job: CompiledJob, *, workers: int, morsel_rows: int,
                progress: Callable[[int], None] | None = None) -> RunSummary:
    """Run a multi-stream job (several sources or operator steps) to the end of its sources."""
    sources = {u.label: u.definition.cls(u.config, job.context) for u in job.sources}
    sinks = [u.definition.cls(u.config, job.context) for u in job.sinks]
    graph = StreamGraph(job, workers)
    summary = RunSummary()
    start = time.perf_counter()
    writers: list[_Writer] = []
    try:
        schemas = graph.bind({name: s.schema() for name, s in sources.items()})
        by_stream: dict[str, list[Any]] = {}
        for sink, stream in zip(sinks, job.sink_streams, strict=True):
            sink.open(schemas[stream])
            by_stream.setdefault(stream, []).append(sink)
        for stream, group in by_stream.items():
            writer = _Writer(group)
            writers.append(writer)
            graph.attach(stream, writer)
        iters = {name: _prefetch(s.batches(None, morsel_rows)) for name, s in sources.items()}
        for name, batch in merged(iters):
            if batch is None:
                graph.end(name)
                continue
            graph.emit(name, batch)
            graph.advance()
            summary.rows += batch.num_rows
            if progress is not None:
                progress(batch.num_rows)
        for writer in writers:
            writer.finish()
        writers = []
        summary.seconds = time.perf_counter() - start
        for sink in sinks:
            text = sink.close()
            if text:
                summary.sink_summaries.append(text)
    finally:
        for writer in writers:
            writer.finish()
        graph.close()
        for s in sources.values():
            s.close()
    summary.signal_counts = graph.signal_counts
    return summary


def collect(job: CompiledJob, *, workers: int = 1, morsel_rows: int = 65_536,
            ) -> dict[str, pa.Table]:
    """Run a job and return every stream's output as a table (tests and notebooks)."""

    class _Collector:
        def __init__(self) -> None:
            self.batches: list[pa.RecordBatch] = []

        def write(self, batch: pa.RecordBatch) -> None:
            self.batches.append(batch)

    sources = {u.label: u.definition.cls(u.config, job.context) for u in job.sources}
    graph = StreamGraph(job, workers)
    collectors = {name: _Collector() for name in job.streams}
    try:
        schemas = graph.bind({name: s.schema() for name, s in sources.items()})
        writers = {name: _Writer([c]) for name, c in collectors.items()}
        for name, w in writers.items():
            graph.attach(name, w)
        iters = {name: s.batches(None, morsel_rows) for name, s in sources.items()}
        for name, batch in merged(iters):
            if batch is None:
                graph.end(name)
            else:
                graph.emit(name, batch)
                graph.advance()
        for w in writers.values():
            w.finish()
    finally:
        graph.close()
    return {name: pa.Table.from_batches(c.batches, schema=schemas[name])
            for name, c in collectors.items()}


__all__ = ["StreamGraph", "collect", "merged", "run_streams"]
