"""The stream graph at run time: every job is one, a one-source job is a graph of one stream.

The plan (``engine/streams.py``) names the streams; here each stream with kernel steps or
signals gets a :class:`~engine.runtime.pipeline.Pipeline` (keyed state sharded over worker
lanes), each operator step an :class:`~engine.operators.base.Operator`, and each stream a list
of readers. A batch of a stream is computed, written and pushed to its readers at once, depth
first. When a stream ends its readers are told, and an operator whose inputs have all ended
flushes and ends its own stream. Operators may promise a *watermark* (no future row of their
output is earlier than it), which lets an as-of join finalise rows without waiting.

:meth:`StreamGraph.gather` and :meth:`StreamGraph.scatter` carry the state of every node
across a checkpoint: the main stream's kernel and rule state exactly as a one-stream job stores
it (so its checkpoints stay readable by ``run-job state``), the other streams' kernel state
under ``<stream>.<step id>`` (all through the job's state backend), and the operators'
snapshots (plus what the driver adds, such as the quality stages) as one pickled file of the
checkpoint directory, covered by its manifest's sha256 like every other file.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tickflow.engine.columns import empty_batch
from tickflow.engine.errors import StateError
from tickflow.engine.operators.base import Operator, timestamps_us
from tickflow.engine.runtime.pipeline import Pipeline
from tickflow.engine.state.backend import StateSnapshot
from tickflow.engine.state.lanes import gather, scatter

NODES_FILE = "graph_nodes.pickle"


@dataclass
class Segment:
    """What a stream's pipeline runs: its kernel steps, its signals, its key."""

    steps: list[Any]
    signals: dict[str, Any]
    key: str


class StreamGraph:
    """Every stream's pipeline, operator and output, wired by stream name."""

    def __init__(self, job: Any, workers: int = 1):
        self.job = job
        self.pipelines: dict[str, Pipeline] = {}
        self.operators: dict[str, Operator] = {}
        self.readers: dict[str, list[tuple[str, str]]] = {n: [] for n in job.streams}
        self.open_ports: dict[str, set[str]] = {}
        for name, stream in job.streams.items():
            if stream.steps or stream.signals:
                self.pipelines[name] = Pipeline(Segment(stream.steps, stream.signals,
                                                        stream.key), workers)
            op = stream.operator
            if op is not None:
                self.operators[name] = op.make()
                self.open_ports[name] = set(op.streams)
                for port, source in op.streams.items():
                    self.readers[source].append((name, port))
        # what computes a stream's batch: its pipeline, or a pager of its state (page_keys)
        self.processors = {name: p.process for name, p in self.pipelines.items()}
        self.outputs: dict[str, Any] = {}  # stream -> anything with put(batch)
        self.schemas: dict[str, pa.Schema] = {}
        self.input_schemas: dict[str, pa.Schema] = {}  # each pipeline's, set by bind()

    @property
    def is_single(self) -> bool:
        """One stream and no operator: the state is exactly one pipeline's."""
        return not self.operators and len(self.job.streams) == 1

    @property
    def main_pipeline(self) -> Pipeline | None:
        return self.pipelines.get(self.job.main_stream)

    def bind(self, source_schemas: dict[str, pa.Schema]) -> dict[str, pa.Schema]:
        """Every stream's output schema, from the sources' schemas, in creation order."""
        for name, stream in self.job.streams.items():
            if stream.is_source:
                raw = source_schemas[name]
            else:
                raw = self.operators[name].bind({port: self.schemas[s] for port, s in
                                                 stream.origin.streams.items()})
            pipeline = self.pipelines.get(name)
            if pipeline is not None:  # a throwaway one-lane pipeline: state stays untouched
                self.input_schemas[name] = raw
                probe = Pipeline(pipeline.job, 1)
                raw = probe.process(empty_batch(raw)).schema
                probe.close()
            self.schemas[name] = raw
        return self.schemas

    def warm(self) -> None:
        """Run each pipeline's kernels and rules over one made-up row, on a throwaway
        pipeline (the state stays untouched), so that the first ticks of a live run do not
        wait while numba loads every kernel's machine code from its cache (0.3-0.6 s for the
        core features on a loaded 2-core machine, a stall every tick behind them waited
        out). Best effort: a schema no row can be made up for is left cold."""
        for name, pipeline in self.pipelines.items():
            schema = self.input_schemas.get(name)
            if schema is None:
                continue
            probe = Pipeline(pipeline.job, 1)
            try:
                probe.process(made_up_row(schema))
            except Exception:  # a kernel refusing the made-up row: that one starts cold
                pass
            finally:
                probe.close()

    def attach(self, name: str, output: Any) -> None:
        self.outputs[name] = output

    def emit(self, name: str, batch: pa.RecordBatch) -> None:
        """A batch of stream ``name`` before its kernel steps: compute, write, pass on."""
        if batch.num_rows == 0:
            return
        process = self.processors.get(name)
        out = process(batch) if process is not None else batch
        output = self.outputs.get(name)
        if output is not None:
            output.put(out)
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
        main = self.main_pipeline
        return dict(main.signal_counts) if main is not None else {}

    # ------------------------------------------------------------------ checkpoints

    def gather(self, extra: dict[str, Any] | None = None) -> tuple[StateSnapshot, bytes | None]:
        """Every node's state: the backend's snapshot and the pickled nodes (None for a
        one-stream graph without extras, whose checkpoints stay as they always were)."""
        main = self.main_pipeline
        snapshot = gather(main) if main is not None else StateSnapshot(keys=[])
        if self.is_single and not extra:
            return snapshot, None
        nodes: dict[str, Any] = {"keys": {}, "operators": {}, "extra": extra or {}}
        for name, pipeline in self.pipelines.items():
            if pipeline is main:
                continue
            part = gather(pipeline)
            nodes["keys"][name] = part.keys
            for sid, fields in part.steps.items():
                snapshot.steps[f"{name}.{sid}"] = fields
        for name, op in self.operators.items():
            nodes["operators"][name] = op.snapshot()
        return snapshot, pickle.dumps(nodes, protocol=pickle.HIGHEST_PROTOCOL)

    def scatter(self, snapshot: StateSnapshot, blob: bytes | None) -> dict[str, Any]:
        """Load what :meth:`gather` made; returns the ``extra`` it carried."""
        main = self.main_pipeline
        if main is not None:
            scatter(main, snapshot)  # it reads its own step ids and ignores the rest
        if blob is None:
            if not self.is_single:
                raise StateError("the checkpoint holds one stream's state, the job is a graph "
                                 "of several; run with --reset-state to start over")
            return {}
        # written by this job's own checkpoint and verified against its manifest's sha256
        nodes = pickle.loads(blob)
        for name, pipeline in self.pipelines.items():
            if pipeline is main:
                continue
            prefix = f"{name}."
            steps = {sid[len(prefix):]: f for sid, f in snapshot.steps.items()
                     if sid.startswith(prefix)}
            scatter(pipeline, StateSnapshot(keys=nodes["keys"][name], steps=steps))
        for name, op in self.operators.items():
            op.restore(nodes["operators"][name])
        return dict(nodes["extra"])


def _first_time(batch: pa.RecordBatch) -> int:
    if "timestamp" not in batch.schema.names or batch.num_rows == 0:
        return 0
    values, _ = timestamps_us(batch.column("timestamp").slice(0, 1))
    return int(values[0])


def merged(sources: dict[str, Iterator[Any]], paired: bool = False) -> Iterator[tuple[str, Any]]:
    """(stream, item) in time order of the batches' first rows, then (stream, None) when a
    source ends. Ties go to the source listed first. With ``paired`` the items are
    ``(batch, position)`` pairs."""
    heads: dict[str, Any] = {}
    order = list(sources)
    rank = {n: i for i, n in enumerate(order)}
    if len(order) == 1:  # one source: nothing to merge
        name = order[0]
        for item in sources[name]:
            yield name, item
        yield name, None
        return

    def first(name: str) -> tuple[int, int]:
        item = heads[name]
        return _first_time(item[0] if paired else item), rank[name]

    for name in order:
        item = next(sources[name], None)
        if item is None:
            yield name, None
        else:
            heads[name] = item
    while heads:
        name = min(heads, key=first)
        yield name, heads[name]
        nxt = next(sources[name], None)
        if nxt is None:
            del heads[name]
            yield name, None
        else:
            heads[name] = nxt


def made_up_row(schema: pa.Schema) -> pa.RecordBatch:
    """One row of ``schema``: 1 in numbers, a marker in strings, the epoch in timestamps,
    null in anything else."""
    arrays = []
    for f in schema:
        t = f.type
        if pa.types.is_dictionary(t):
            arr = pa.array(["~warm"]).dictionary_encode().cast(t)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = pa.array(["~warm"], t)
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t):
            arr = pa.array([1], pa.int64()).cast(t)
        elif pa.types.is_boolean(t):
            arr = pa.array([False])
        else:
            arr = pa.nulls(1, t)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
