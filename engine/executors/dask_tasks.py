"""The Dask executor's tasks: what runs on the workers, and the plain data they receive.

Everything here is imported by worker processes, so it depends on nothing that lives only on
the client. A task receives a :class:`DaskPlan` (the loaded job as plain data plus the output
layout) and compiles the job itself; no compiled object and no tick crosses the wire.
See :mod:`tickflow.engine.executors.dask` for the client side and the output layout.
"""

from __future__ import annotations

import copy
import ctypes
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tickflow.engine import own_process, start_up_gc
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.contract import FileSource, MergeableSink, PartitionedSink, RunContext
from tickflow.engine.errors import TickflowError
from tickflow.engine.executors.partition import PARTITION_HASH, ScanCounts, partition_batches
from tickflow.engine.executors.partitioned_dataset import dataset_files
from tickflow.engine.loader import LoadedJob


class ClusterError(TickflowError):
    """The Dask cluster could not be reached, has no workers, or a partition failed on it."""


@dataclass(frozen=True)
class DaskPlan:
    """All a task needs, as plain data: the loaded job (not the compiled one) and the layout."""

    run_id: str
    loaded: LoadedJob
    context: RunContext
    partitions: int
    morsel_rows: int
    outputs: tuple[int, ...]  # positions in the compiled job's sinks of its partitioned sinks
    streams: tuple[str, ...] = ()  # the stream each output writes (the main one when empty)
    # keys placed on partitions by their rows (executors/placement.py); others by the hash
    placement: dict[str | None, int] | None = None


@dataclass
class PartResult:
    """What one partition task reports back (small: no data)."""

    partition: int
    rows: int
    seconds: float
    keys: list[str]
    cpu_seconds: float = 0.0  # the worker process's CPU time during the task
    signal_counts: dict[str, int] = field(default_factory=dict)
    worker: str = ""
    merged: list[Any] = field(default_factory=list)  # its MergeableSinks, merged on the client
    row_groups_read: int = 0
    row_groups_skipped: int = 0  # input row groups without a key of this partition
    quality_counts: dict[str, int] = field(default_factory=dict)
    # [rows, file identity] of each part this task wrote, in the plan's output order: the
    # commit checks that it publishes exactly these files
    digests: list[list[Any]] = field(default_factory=list)


_COMPILED: dict[str, CompiledJob] = {}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_allocator_tuned = False


def _tune_allocator() -> None:
    """Give glibc malloc back its large-block reuse in this worker process.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
    glibc's adaptive mmap threshold: every column buffer above 128 KB (a 65,536-row float64
    column is 512 KB) is then mmapped, page-faulted and unmapped again, which made partition
    tasks 2-3x slower than the same code outside a worker. Fixed thresholds restore reuse.
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to undo
        pass


def _compiled(plan: DaskPlan) -> CompiledJob:
    """The job compiled on this worker, once per run (tasks of a run share it)."""
    job = _COMPILED.get(plan.run_id)
    if job is None:
        job = compile_job(copy.deepcopy(plan.loaded))
        _COMPILED.clear()
        _COMPILED[plan.run_id] = job
    return job


def _coalesce(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Filtered morsels glued back to about ``rows`` rows (fewer kernel calls per row)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        have += batch.num_rows
        if have >= rows:
            yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
            pending, have = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def absolute_file_paths(job: CompiledJob, loaded: LoadedJob) -> None:
    """Make the ``path`` of every file source and partitioned sink in ``loaded`` absolute.

    Workers must find the files where the client does; relative paths are taken against the
    client's directory (``~`` is left for each side to expand).
    """
    for section, uses, capability in (("sources", job.sources, FileSource),
                                      ("sinks", job.sinks, PartitionedSink)):
        blocks = loaded.data.get(section) or []
        for use in uses:
            block = blocks[use.index] if use.index < len(blocks) else None
            if isinstance(block, dict) and isinstance(block.get("path"), str) and \
                    isinstance(use.definition.cls(use.config, job.context), capability):
                path = block["path"]
                if not (path.startswith("~") or os.path.isabs(path)):
                    block["path"] = os.path.abspath(path)


PLACED_BY_ROWS = f"keys placed by their rows; keys not placed: {PARTITION_HASH}"


def _part_metadata(plan: DaskPlan, partition: int) -> dict[str, str]:
    how = PLACED_BY_ROWS if plan.placement else PARTITION_HASH
    return {"tickflow.run_id": plan.run_id, "tickflow.partition": str(partition),
            "tickflow.partitions": str(plan.partitions), "tickflow.partition_hash": how}


def partitioned_sinks(job: CompiledJob, context: RunContext,
                      outputs: tuple[int, ...]) -> list[PartitionedSink]:
    """The job's partitioned sinks named by a plan (built afresh: a sink is cheap to make)."""
    sinks = []
    for index in outputs:
        use = job.sinks[index]
        sink = use.definition.cls(use.config, context)
        assert isinstance(sink, PartitionedSink), use.label
        sinks.append(sink)
    return sinks


def run_partition(plan: DaskPlan, partition: int) -> PartResult:
    """Task: the job over the rows of one key partition, written as its part(s)."""
    start = time.perf_counter()
    cpu = time.process_time()
    _tune_allocator()
    try:
        result = _run_partition(plan, partition, start)
    except TickflowError as exc:  # re-raised as a plain message: it pickles back intact
        raise ClusterError(f"partition {partition}: {exc}") from None
    result.cpu_seconds = time.process_time() - cpu
    return result


class _PartitionView:
    """One source seen by one task: the rows of its partition's keys, in the source's order."""

    def __init__(self, source: Any, key: str, plan: DaskPlan, partition: int,
                 scanned: ScanCounts):
        self.source = source
        self.key = key
        self.plan = plan
        self.partition = partition
        self.scanned = scanned

    def schema(self) -> pa.Schema:
        return self.source.schema()

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        # read about `partitions` morsels at a time, so that a filtered batch is about one
        # morsel and is rarely glued to the next (each glue is a copy)
        # on a dataset `run-job partition` wrote, only the files holding this partition's keys
        plan = self.plan
        read_rows = min(plan.morsel_rows * plan.partitions, 1 << 20)
        dataset = dataset_files(self.source, self.key, plan.partitions, self.partition,
                                plan.placement)
        files = None
        if dataset is not None:
            files, skipped = dataset
            self.scanned.row_groups_skipped += skipped
        mine = partition_batches(self.source, self.key, plan.partitions, self.partition,
                                 read_rows, self.scanned, files=files,
                                 whole_rows=plan.morsel_rows, placement=plan.placement)
        return _coalesce(mine, max(1, plan.morsel_rows // 2))

    def close(self) -> None:
        self.source.close()


class _KeptSink:
    """A mergeable sink of the partition: fed here, merged and closed on the client."""

    def __init__(self, sink: MergeableSink):
        self.sink: Any = sink

    def open(self, schema: pa.Schema) -> None:
        self.sink.open(schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.sink.write(batch)

    def close(self) -> None:
        return None


def _run_partition(plan: DaskPlan, partition: int, start: float) -> PartResult:
    """The driver over this partition's rows of every source; its outputs are the parts."""
    from tickflow.engine.runtime.driver import Driver

    with start_up_gc.paused_the_first_time():  # a worker's start-up: once per process
        own_process.numba_blas_alone()  # numba's start without scipy.linalg (a no-op after)
        job = _compiled(plan)
        scanned = ScanCounts()
        sources = {u.label: _PartitionView(u.definition.cls(u.config, plan.context), job.key,
                                           plan, partition, scanned) for u in job.sources}
        streams = plan.streams or (job.main_stream,) * len(plan.outputs)
        metadata = _part_metadata(plan, partition)
        parted = partitioned_sinks(job, plan.context, plan.outputs)
        parts = [sink.part(plan.run_id, partition, metadata) for sink in parted]
        sinks: list[tuple[Any, str]] = list(zip(parts, streams, strict=True))
        merged = _mergeable_sinks(job, plan.context)
        sinks.extend((_KeptSink(m), job.main_stream) for m in merged)
        driver = Driver(job, workers=1, morsel_rows=plan.morsel_rows, sources=sources,
                        sinks=sinks, threads=False)  # a Dask task is given one core
    summary = driver.run()
    main = driver.graph.main_pipeline
    keys = sorted(str(k) for k in main.keys.values) if main is not None else []
    return PartResult(partition=partition, rows=summary.rows,
                      seconds=time.perf_counter() - start, keys=keys,
                      signal_counts=dict(summary.signal_counts), worker=_worker_address(),
                      merged=merged, row_groups_read=scanned.row_groups_read,
                      row_groups_skipped=scanned.row_groups_skipped,
                      quality_counts=dict(summary.quality_counts),
                      digests=[part.digest() for part in parts])


def _mergeable_sinks(job: CompiledJob, context: RunContext) -> list[MergeableSink]:
    """The job's sinks that accumulate a result (the report), one per partition task."""
    made = (use.definition.cls(use.config, context) for use in job.sinks)
    return [sink for sink in made if isinstance(sink, MergeableSink)]


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker (called directly)
        return ""


def commit_outputs(plan: DaskPlan, results: list[PartResult]) -> list[list[str]]:
    """Task: every partitioned sink checks its parts are all staged and publishes them.

    Returns:
        The files of each output of the plan, in the plan's order.
    """
    return commit_parts_of(_compiled(plan), plan, results)


def commit_parts_of(job: CompiledJob, plan: DaskPlan,
                    results: list[PartResult]) -> list[list[str]]:
    """:func:`commit_outputs` with ``job`` compiled already (the client's, on its own machine)."""
    assert sorted(r.partition for r in results) == list(range(plan.partitions))
    parted = partitioned_sinks(job, plan.context, plan.outputs)
    return [sink.commit_parts(plan.run_id, plan.partitions,
                              {r.partition: r.digests[i] for r in results})
            for i, sink in enumerate(parted)]


def discard_staging(plan: DaskPlan) -> None:
    """Task: drop the staged parts of a failed run."""
    for sink in partitioned_sinks(_compiled(plan), plan.context, plan.outputs):
        sink.discard_parts(plan.run_id)
