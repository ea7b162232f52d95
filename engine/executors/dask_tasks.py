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
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tickflow.connectors.base import RunContext
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.errors import SinkError, TickflowError
from tickflow.engine.executors.partition import ScanCounts, partition_batches
from tickflow.engine.loader import LoadedJob

PART_NAME = "part-{:05d}.parquet"
PARTITION_HASH = "crc32(utf-8 key) % partitions"


class ClusterError(TickflowError):
    """The Dask cluster could not be reached, has no workers, or a partition failed on it."""


@dataclass(frozen=True)
class PartOutput:
    """Where one parquet sink's parts go, and how they are written."""

    directory: str
    staging: str
    compression: str
    row_group_rows: int
    statistics: bool


@dataclass(frozen=True)
class DaskPlan:
    """All a task needs, as plain data: the loaded job (not the compiled one) and the layout."""

    run_id: str
    loaded: LoadedJob
    context: RunContext
    partitions: int
    morsel_rows: int
    outputs: tuple[PartOutput, ...]
    streams: tuple[str, ...] = ()  # the stream each output writes (the main one when empty)


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
    report: Any = None  # the partition's report sink (its keys' statistics), merged later
    row_groups_read: int = 0
    row_groups_skipped: int = 0  # input row groups without a key of this partition
    quality_counts: dict[str, int] = field(default_factory=dict)
    # [rows, sha256] of each part this task staged, by output directory: checked at commit
    digests: dict[str, list[Any]] = field(default_factory=dict)


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


def _writers(plan: DaskPlan, partition: int, schema: pa.Schema,
             outputs: Any = None) -> list[Any]:
    from tickflow.connectors.parquet import AtomicParquetWriter

    meta = {**plan.context.provenance(), "tickflow.run_id": plan.run_id,
            "tickflow.partition": str(partition), "tickflow.partitions": str(plan.partitions),
            "tickflow.partition_hash": PARTITION_HASH}
    return [AtomicParquetWriter(Path(o.staging) / PART_NAME.format(partition), schema,
                                compression=o.compression, row_group_rows=o.row_group_rows,
                                statistics=o.statistics, metadata=meta)
            for o in (plan.outputs if outputs is None else outputs)]


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
        plan = self.plan
        read_rows = min(plan.morsel_rows * plan.partitions, 1 << 20)
        mine = partition_batches(self.source, self.key, plan.partitions, self.partition,
                                 read_rows, self.scanned)
        return _coalesce(mine, max(1, plan.morsel_rows // 2))

    def close(self) -> None:
        self.source.close()


class _PartSink:
    """A parquet sink's part of this partition, created with the stream's schema."""

    def __init__(self, plan: DaskPlan, partition: int, output: PartOutput):
        self.plan, self.partition, self.output = plan, partition, output
        self.writer: Any = None

    def open(self, schema: pa.Schema) -> None:
        if self.writer is None:
            self.writer = _writers(self.plan, self.partition, schema, [self.output])[0]

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write(batch)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class _KeptReport:
    """The partition's report sink: fed here, merged and closed on the client."""

    def __init__(self, report: Any):
        self.report = report

    def open(self, schema: pa.Schema) -> None:
        self.report.open(schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.report.write(batch)

    def close(self) -> None:
        return None


def _run_partition(plan: DaskPlan, partition: int, start: float) -> PartResult:
    """The driver over this partition's rows of every source; its outputs are the parts."""
    from tickflow.engine.runtime.driver import Driver

    job = _compiled(plan)
    scanned = ScanCounts()
    sources = {u.label: _PartitionView(u.definition.cls(u.config, plan.context), job.key,
                                       plan, partition, scanned) for u in job.sources}
    streams = plan.streams or (job.main_stream,) * len(plan.outputs)
    sinks: list[tuple[Any, str]] = [(_PartSink(plan, partition, out), stream)
                                    for out, stream in zip(plan.outputs, streams, strict=True)]
    report = _report_sink(job, plan.context)
    if report is not None:
        sinks.append((_KeptReport(report), job.main_stream))
    driver = Driver(job, workers=1, morsel_rows=plan.morsel_rows, sources=sources,
                    sinks=sinks)
    summary = driver.run()
    main = driver.graph.main_pipeline
    keys = sorted(str(k) for k in main.keys.values) if main is not None else []
    from tickflow.connectors.part_checksums import part_digest

    digests = {out.directory: part_digest(Path(out.staging) / PART_NAME.format(partition))
               for out in plan.outputs}
    return PartResult(partition=partition, rows=summary.rows,
                      seconds=time.perf_counter() - start, keys=keys,
                      signal_counts=dict(summary.signal_counts), worker=_worker_address(),
                      report=report, row_groups_read=scanned.row_groups_read,
                      row_groups_skipped=scanned.row_groups_skipped,
                      quality_counts=dict(summary.quality_counts), digests=digests)


def _report_sink(job: CompiledJob, context: RunContext) -> Any:
    use = next((u for u in job.sinks if u.definition.name == "report"), None)
    return None if use is None else use.definition.cls(use.config, context)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker (called directly)
        return ""


def _is_part(name: str) -> bool:
    return name.startswith("part-") and name.endswith(".parquet")


def commit_outputs(plan: DaskPlan, results: list[PartResult]) -> list[str]:
    """Task: check every partition's part is staged, then swap the staging directories in.

    Leftovers of killed attempts (hidden temp files) are removed first. An existing output
    (a file from a local run, or the parts of an earlier run) is replaced; a directory holding
    anything other than parts is refused rather than deleted.
    """
    assert sorted(r.partition for r in results) == list(range(plan.partitions))
    committed = []
    for out in plan.outputs:
        staging, target = Path(out.staging), Path(out.directory)
        for p in staging.iterdir():
            if not _is_part(p.name):
                p.unlink()
        names = sorted(p.name for p in staging.iterdir())
        expected = [PART_NAME.format(k) for k in range(plan.partitions)]
        if names != expected:
            raise ClusterError(f"{target}: staged parts {names} are not the expected "
                               f"{len(expected)} parts; the output is left unchanged")
        from tickflow.connectors.part_checksums import verify_part

        for r in results:  # a part truncated or rewritten since its task finished
            verify_part(staging / PART_NAME.format(r.partition), r.digests[out.directory],
                        f"dask output {target}", since="its task finished",
                        remedy="the output is left unchanged; run the job again")
        trash = target.with_name(f".{target.name}.old-{plan.run_id}")
        if target.is_dir():
            strays = [p.name for p in target.iterdir() if not _is_part(p.name)]
            if strays:
                raise SinkError(f"parquet sink: refusing to replace the directory {target}: "
                                f"it holds files that are not parts ({', '.join(strays[:3])})")
        if target.exists():
            os.replace(target, trash)
        os.replace(staging, target)
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        elif trash.exists():
            trash.unlink()
        committed.extend(str(target / n) for n in names)
    return committed


def discard_staging(plan: DaskPlan) -> None:
    """Task: remove the staging directories of a failed run."""
    for out in plan.outputs:
        shutil.rmtree(out.staging, ignore_errors=True)
