"""A kernel segment of the graph: morsel-parallel kernels on a thread pool, in input order.

Each morsel (a record batch of ``morsel_rows`` rows) is partitioned by key id into one shard per
worker (``key id % workers``), so that every key's rows stay in order on one worker and each
worker owns the state of its keys; numba kernels release the GIL, so shards run in parallel.
Outputs are scattered back to the input order. Reading, computing and writing overlap through
small bounded queues (:func:`prefetch`, :class:`Writer`). The result is identical for any
worker count and morsel size because each key's rows meet the same kernels in the same order
with the same state.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickflow.engine.columns import arrow_array, float_column, to_numpy
from tickflow.engine.errors import KernelRuntimeError, TickflowError
from tickflow.engine.keys import KeyIndex
from tickflow.engine.ml.batch import batch_steps, kernel_steps
from tickflow.engine.runtime.key_groups import (
    GROUP_MIN_KEYS,
    GROUP_MIN_ROWS,
    key_order,
    run_grouped,
)
from tickflow.engine.state.arrays import KernelState
from tickflow.engine.step import BoundKernel


@dataclass
class RunSummary:
    rows: int = 0
    seconds: float = 0.0
    signal_counts: dict[str, int] = field(default_factory=dict)
    sink_summaries: list[str] = field(default_factory=list)
    quality_counts: dict[str, int] = field(default_factory=dict)  # rows by quality reason

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def timestamp_us(batch: pa.RecordBatch) -> np.ndarray:
    """Row timestamps as int64 microseconds since the epoch (zeros when there is none)."""
    if "timestamp" not in batch.schema.names:
        return np.zeros(batch.num_rows, dtype=np.int64)
    col = batch.column("timestamp")
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "us":
            col = pc.cast(col, pa.timestamp("us", tz=col.type.tz))
        # the same int64 buffer viewed: ~1 µs, where a cast takes ~8 (twice a live batch)
        col = col.view(pa.int64()) if isinstance(col, pa.Array) else col.cast(pa.int64())
    if col.null_count:
        col = pc.fill_null(col, 0)
    return np.ascontiguousarray(to_numpy(col), dtype=np.int64)


ROOM_KEYS = 64
"""Keys a live job's state has room for before its first tick (about 10 KB each for the
core features at their full windows)."""


class Lane:
    """One worker's share of the keys: the state of every step for those keys."""

    def __init__(self, steps: list[BoundKernel]):
        self.steps = steps
        self.states: list[KernelState] = [s.new_state() for s in steps]

    def run(self, key: np.ndarray, ts: np.ndarray, columns: dict[str, np.ndarray],
            first: int = 0, stop: int | None = None,
            resolve: Callable[[BoundKernel], tuple[int, ...]] | None = None,
            ) -> dict[str, np.ndarray]:
        """Run steps[first:stop]; ``resolve`` gives a cross-key step its keys' global ids."""
        produced: dict[str, np.ndarray] = {}
        # per batch, not per step: at ~100 rows a step's fixed cost is what a batch pays
        n_keys = int(key.max()) + 1 if key.size else 0
        for step, state in zip(self.steps[first:stop], self.states[first:stop], strict=True):
            inputs = [produced[c] if c in produced else columns[c] for c in step.input_columns]
            try:
                key_ids = resolve(step) if resolve is not None and step.is_cross_key else ()
                outs = step.run(key, ts, inputs, state, key_ids, n_keys)
            except TickflowError:
                raise
            except Exception as exc:  # a kernel bug must still name its step
                raise KernelRuntimeError(f"step '{step.step_id}' ({step.definition.name}) "
                                         f"failed: {type(exc).__name__}: {exc}") from exc
            produced.update(zip(step.output_columns, outs, strict=True))
        return produced

    def widen_windows(self) -> None:
        """Every step's per-row buffers at their full window now, and room for
        ``ROOM_KEYS`` keys, for the keys to come.

        A live job calls this before its first tick: its keys fill their windows within their
        first few hundred ticks anyway, and otherwise the first batches pay for every width
        on the way (8, 16, 32, 64, full), each key moved to a side tier and back: 7, 5 and 4
        ms of CPU for the first three 100-tick batches of the live benchmark's job, against
        0.5 ms later (docs/performance.md); the room (the arrays' first regrowth, 8 to 16
        keys) another 1 ms of the first. Outputs are the same at any width."""
        for state in self.states:
            if state.per_row:
                state.grow_to({f.name: f.shape[-1] for f in state.per_row})
            if state.tiered:  # and room for the first keys (a cross-key step has one row)
                state.make_room(ROOM_KEYS)


class Pipeline:
    """Compiled steps and signals applied batch by batch, with keyed state carried forward.

    The same object serves research (a finite stream) and live (an endless one). ``job`` is
    anything with ``steps``, ``signals`` and ``key`` (a compiled job or a stream of it).
    """

    def __init__(self, job: Any, workers: int = 1):
        self.job = job
        self.workers = max(1, workers)
        self.keys = KeyIndex()
        self.lanes = [Lane(kernel_steps(job.steps)) for _ in range(self.workers)]
        self.batch_steps = batch_steps(job.steps)  # run after the lanes, on the whole batch
        # a cross-key step reads the rows of several keys: it runs on the whole batch in lane 0
        # with global key ids, between the key-sharded runs of the steps around it
        self.stages = _stages(self.lanes[0].steps)
        self.rule_states = {name: rule.new_state() for name, rule in job.signals.items()}
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        step_outputs = {c for s in job.steps for c in s.output_columns}
        self.source_inputs = sorted({c for s in job.steps for c in s.input_columns}
                                    - step_outputs)
        self.signal_inputs = sorted({c for r in job.signals.values() for c in r.columns}
                                    - step_outputs)
        self.signal_counts = dict.fromkeys(job.signals, 0)
        self.decode: set[str] = set()  # columns read dictionary-encoded, written as plain values
        # int8 code outputs that a kernel declares as categories are written as dictionary
        # strings (e.g. triangular_arbitrage's tri_route)
        self.categories: dict[str, pa.Array] = {}
        for s in job.steps:
            declared = s.definition.extra.get("categories", {})
            defaults = s.definition.output_names(s.params, s.input_columns)
            for default, actual in zip(defaults, s.output_columns, strict=True):
                if default in declared:
                    self.categories[actual] = pa.array(declared[default], pa.string())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def widen_windows(self) -> None:
        """Each lane's per-row buffers at their full window (``Lane.widen_windows``)."""
        for lane in self.lanes:
            lane.widen_windows()

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        gid = self.keys.encode(batch.column(self.job.key))
        ts = timestamp_us(batch)
        columns = {c: float_column(batch.column(c)) for c in self.source_inputs}
        produced: dict[str, np.ndarray] = {}
        for first, stop, cross_key in self.stages:
            cols = {**columns, **produced}
            if (not cross_key and self.workers == 1 and n >= GROUP_MIN_ROWS
                    and len(self.keys) >= GROUP_MIN_KEYS):
                produced.update(run_grouped(self.lanes[0].run, self.lanes[0].steps[first:stop],
                                            gid, ts, cols, len(self.keys), first, stop))
            elif cross_key or self.workers == 1 or n == 0:  # (an empty batch: empty outputs)
                produced.update(self.lanes[0].run(gid, ts, cols, first, stop, self._key_ids))
            else:
                produced.update(self._run_sharded(gid, ts, cols, n, first, stop))
        for batch_step in self.batch_steps:
            produced.update(batch_step.run_batch(produced, columns))
        names = list(batch.schema.names)
        arrays: list[Any] = [c.dictionary_decode() if name in self.decode
                             and pa.types.is_dictionary(c.type) else c
                             for name, c in zip(names, batch.columns, strict=True)]
        for step in self.job.steps:
            for col in step.output_columns:
                names.append(col)
                if col in self.categories:
                    arrays.append(pa.DictionaryArray.from_arrays(
                        arrow_array(produced[col]), self.categories[col]))
                else:
                    arrays.append(arrow_array(produced[col]))
        if self.job.signals:
            env = dict(produced)
            for c in self.signal_inputs:
                env[c] = float_column(batch.column(c))
            for name, rule in self.job.signals.items():
                flags = rule.mask(env, keys=gid, state=self.rule_states[name]).astype(np.int8)
                self.signal_counts[name] += int(flags.sum())
                names.append(name)
                arrays.append(arrow_array(flags))
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _key_ids(self, step: BoundKernel) -> tuple[int, ...]:
        return tuple(self.keys.ids.get(v, -1) for v in step.key_values)

    def _run_sharded(self, gid: np.ndarray, ts: np.ndarray, columns: dict[str, np.ndarray],
                     n: int, first: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        w = self.workers
        shard = gid % w
        per_lane = -(-len(self.keys) // w)  # each lane's rows grouped by its local key id
        order = key_order(shard * per_lane + gid // w, per_lane * w)[0]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(shard, minlength=w))])
        futures = []
        for s in range(w):
            idx = order[bounds[s]:bounds[s + 1]]
            if idx.size == 0:
                continue
            local = gid[idx] // w
            cols = {c: v[idx] for c, v in columns.items()}
            assert self.pool is not None
            futures.append((idx, self.pool.submit(self.lanes[s].run, local, ts[idx], cols,
                                                  first, stop)))
        out: dict[str, np.ndarray] = {}
        for idx, fut in futures:
            part = fut.result()
            for col, values in part.items():
                if col not in out:
                    out[col] = np.empty(n, dtype=values.dtype)
                out[col][idx] = values
        return out


def _stages(steps: list[BoundKernel]) -> list[tuple[int, int, bool]]:
    """(first, stop, cross_key) runs of consecutive steps that are all cross-key or all not."""
    stages: list[tuple[int, int, bool]] = []
    for i, step in enumerate(steps):
        if stages and stages[-1][2] == step.is_cross_key:
            stages[-1] = (stages[-1][0], i + 1, step.is_cross_key)
        else:
            stages.append((i, i + 1, step.is_cross_key))
    return stages


_END = object()


def prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run an iterator in a thread, ``depth`` items ahead (Arrow I/O releases the GIL)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    t = threading.Thread(target=produce, name="tickflow-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class Writer:
    """Writes batches to the sinks on a thread, in order, so compute is not blocked."""

    def __init__(self, sinks: list[Any], name: str = "tickflow-write"):
        self.sinks = sinks
        self.q: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.ended = False
        self.prepare = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            batch = self.q.get()
            if batch is _END:
                if self.prepare and self.error is None:
                    self._prepare_closes()
                return
            if self.error is not None:
                self.q.task_done()
                continue
            try:
                for s in self.sinks:
                    s.write(batch)
            except BaseException as exc:
                self.error = exc
            finally:
                self.q.task_done()

    def drain(self) -> None:
        """Wait until every batch put so far is written (before a checkpoint)."""
        self.q.join()
        if self.error is not None:
            raise self.error

    def put(self, batch: pa.RecordBatch) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(batch)

    def _prepare_closes(self) -> None:
        """Each sink's optional ``prepare_close``: work its ``close`` would do that writes
        nothing (the report's statistics and page), done here while other writers finish. A
        failure is left for ``close`` to meet again and raise where it always did."""
        for s in self.sinks:
            prepare = getattr(s, "prepare_close", None)
            if prepare is not None:
                with contextlib.suppress(Exception):
                    prepare()

    def end(self, prepare: bool = False) -> None:
        """No more batches: the thread ends once it has written those it has (``prepare``:
        and prepared its sinks' closes). Does not wait; :meth:`finish` does."""
        if not self.ended:
            self.ended = True
            self.prepare = prepare
            self.q.put(_END)

    def finish(self) -> None:
        self.end()
        self.thread.join()
        if self.error is not None:
            raise self.error


_prefetch = prefetch  # the names executors used before the runtime package
_Writer = Writer
