"""The Dask executor: the same job on a cluster, partitioned by key, with identical results.

Only the executor changes, never the job. The client compiles the job once (so every mistake is
reported before anything is submitted), then submits one task per key partition
(:mod:`engine.executors.partition`: a stable CRC-32 of the symbol modulo ``partitions``). Each
task compiles the job again on its worker from the loaded YAML data (plain, picklable data:
nothing compiled crosses the wire), reads the Parquet input itself, keeps the rows of its keys
in arrival order, runs the same :class:`~engine.executors.local.Pipeline` as the local executor
(so every key meets the same kernels in the same order with the same state) and writes its own
``part-NNNNN.parquet`` with the provenance metadata. The client never ships data.

Output layout: a parquet sink's ``path`` becomes a directory of parts, one per partition
(``out/research_features.parquet/part-00000.parquet`` ...), readable as one dataset by the
parquet source, pyarrow, polars or pandas. Parts are written into a hidden staging directory
beside it; a final task checks that every partition's part is there and swaps the staging
directory in, so a killed worker (whose partitions the scheduler recomputes elsewhere), a failed
run or a rerun with another partition count never leaves a mix of parts. Each task also feeds
its output to its own research-report sink (its keys' statistics and grid prices); the client
merges these and writes the report, so the output is never read back.

Workers must see the input and output paths at the same place as the client (a shared volume
or the same machine); relative paths are made absolute against the client's directory.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from connectors.base import RunContext
from engine.compile import CompiledJob, compile_job
from engine.errors import SinkError, TickflowError
from engine.executors.local import Pipeline, RunSummary
from engine.executors.partition import filter_partition
from engine.loader import LoadedJob

CONNECT_TIMEOUT_S = 5.0
WORKER_WAIT_S = 30.0
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


@dataclass
class DaskRunSummary(RunSummary):
    """The local executor's totals plus what only a cluster run has."""

    partitions: int = 0
    parts: list[PartResult] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    dashboard: str = ""


# --------------------------------------------------------------------------- worker side

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


def _writers(plan: DaskPlan, partition: int, schema: pa.Schema) -> list[Any]:
    from connectors.parquet import AtomicParquetWriter

    meta = {**plan.context.provenance(), "tickflow.run_id": plan.run_id,
            "tickflow.partition": str(partition), "tickflow.partitions": str(plan.partitions),
            "tickflow.partition_hash": PARTITION_HASH}
    return [AtomicParquetWriter(Path(o.staging) / PART_NAME.format(partition), schema,
                                compression=o.compression, row_group_rows=o.row_group_rows,
                                statistics=o.statistics, metadata=meta)
            for o in plan.outputs]


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


def _run_partition(plan: DaskPlan, partition: int, start: float) -> PartResult:
    job = _compiled(plan)
    use = job.sources[0]
    source = use.definition.cls(use.config, plan.context)
    pipeline = Pipeline(job, workers=1)
    report = _report_sink(job, plan.context)
    writers: list[Any] = []
    rows = 0
    try:
        mine = (filter_partition(b, job.key, plan.partitions, partition)
                for b in source.batches(None, plan.morsel_rows))
        for batch in _coalesce(mine, plan.morsel_rows):
            result = pipeline.process(batch)
            if not writers:
                writers = _writers(plan, partition, result.schema)
            for w in writers:
                w.write(result)
            if report is not None:
                report.write(result)
            rows += batch.num_rows
        if not writers:  # no key of this partition: still an (empty) part with the schema
            empty = pipeline.process(pa.RecordBatch.from_pylist([], schema=source.schema()))
            writers = _writers(plan, partition, empty.schema)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        pipeline.close()
        source.close()
    return PartResult(partition=partition, rows=rows, seconds=time.perf_counter() - start,
                      keys=sorted(str(k) for k in pipeline.keys.values),
                      signal_counts=dict(pipeline.signal_counts), worker=_worker_address(),
                      report=report)


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


# --------------------------------------------------------------------------- client side

def connect(address: str, *, workers: int | None = None,
            timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[Any, Any]:
    """A client for ``address`` (``tcp://host:8786``) or a new LocalCluster (``local``).

    Returns:
        ``(client, cluster)``; ``cluster`` is None unless this call started it.

    Raises:
        ClusterError: the scheduler did not answer within ``timeout_s`` seconds.
    """
    from distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=":0")
        return Client(cluster), cluster
    try:
        return Client(address, timeout=timeout_s, set_as_default=False), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within "
                           f"{timeout_s:g} s ({type(exc).__name__}: {exc}); start one with "
                           f"`dask scheduler` and `dask worker {address}`, or run with "
                           f"--cluster local") from None


def check_supported(job: CompiledJob) -> None:
    """The Dask executor partitions Parquet input; say so clearly for anything else."""
    src = job.sources[0].definition.name
    if src != "parquet":
        raise ClusterError(f"the dask executor reads parquet sources (each worker reads its "
                           f"keys' rows itself); sources[0] is kind {src!r}")
    if len(job.spec.sources) > 1:
        raise ClusterError("the dask executor runs jobs with one source")
    for i, step in enumerate(job.spec.steps):
        if getattr(step, "operator", None) is not None:
            raise ClusterError(f"steps[{i}]: operator steps ({step.operator}) do not run on the "
                               f"dask executor yet; run this job with executor.kind: local")
    for i, block in enumerate(job.spec.sinks):
        if getattr(block, "from_", None) is not None:
            raise ClusterError(f"sinks[{i}].from: the dask executor writes the main stream "
                               f"only; run this job with executor.kind: local")
    for use in job.sinks:
        if use.definition.name not in ("parquet", "report"):
            raise ClusterError(f"the dask executor writes parquet sinks (a directory of parts) "
                               f"and the report; sinks[{use.index}] is kind "
                               f"{use.definition.name!r}")


def _absolute(path: str) -> str:
    return path if path.startswith("~") or os.path.isabs(path) else os.path.abspath(path)


def make_plan(job: CompiledJob, partitions: int) -> DaskPlan:
    """The plan for a run: relative paths made absolute, one output per parquet sink."""
    run_id = uuid.uuid4().hex[:12]
    loaded = copy.deepcopy(job.loaded)
    for section in ("sources", "sinks"):
        for block in loaded.data.get(section) or []:
            if block.get("kind") == "parquet" and isinstance(block.get("path"), str):
                block["path"] = _absolute(block["path"])
    outputs = []
    for use, block in zip([u for u in job.sinks if u.definition.name == "parquet"],
                          [b for b in loaded.data.get("sinks") or []
                           if b.get("kind") == "parquet"], strict=True):
        target = Path(os.path.expanduser(block["path"]))
        cfg = use.config
        outputs.append(PartOutput(
            directory=str(target), staging=str(target.with_name(f".{target.name}.{run_id}")),
            compression=cfg.compression, row_group_rows=cfg.row_group_rows,
            statistics=cfg.statistics))
    return DaskPlan(run_id=run_id, loaded=loaded, context=job.context, partitions=partitions,
                    morsel_rows=job.spec.executor.morsel_rows, outputs=tuple(outputs))


def run_dask(job: CompiledJob, *, address: str | None = None, client: Any = None,
             partitions: int | None = None, workers: int | None = None,
             on_connect: Callable[[Any, int], None] | None = None,
             progress: Callable[[PartResult], None] | None = None) -> DaskRunSummary:
    """Run a compiled job on a Dask cluster; returns the same totals as the local executor.

    Args:
        job: the compiled job (compiled on the client, so problems show before submitting).
        address: ``tcp://host:8786`` or ``local``; default ``executor.address``.
        client: an existing ``distributed.Client`` (then ``address`` is not used).
        partitions: key partitions; default ``executor.partitions``, else one per worker thread.
        workers: worker processes of ``local``.
        on_connect: called with the client and the partition count before submitting.
        progress: called with each partition's result as it finishes.

    Raises:
        ClusterError: unreachable scheduler, no workers, or a partition that kept failing.
    """
    check_supported(job)
    cluster = None
    if client is None:
        address = address or job.spec.executor.address
        if not address:
            raise ClusterError("executor.kind is dask but no scheduler is given: set "
                               "executor.address (tcp://host:8786) or pass --cluster")
        client, cluster = connect(address, workers=workers)
    try:
        return _submit(job, client, partitions, on_connect, progress)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _submit(job: CompiledJob, client: Any, partitions: int | None,
            on_connect: Callable[[Any, int], None] | None,
            progress: Callable[[PartResult], None] | None) -> DaskRunSummary:
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"the Dask scheduler at {client.scheduler.address} has no "
                           f"workers (waited {WORKER_WAIT_S:g} s)") from None
    threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    count = partitions or job.spec.executor.partitions or max(1, threads)
    if any(getattr(s, "is_cross_key", False) for s in job.steps):
        count = 1  # a cross-key step reads several keys' rows: they must stay together
    plan = make_plan(job, count)
    if on_connect is not None:
        on_connect(client, count)
    summary = DaskRunSummary(signal_counts=dict.fromkeys(job.signals, 0), partitions=count,
                             dashboard=str(client.dashboard_link or ""))
    start = time.perf_counter()
    futures = [client.submit(run_partition, plan, k, key=f"tickflow-{plan.run_id}-part-{k}",
                             pure=False) for k in range(count)]
    try:
        for fut in as_completed(futures, loop=client.loop):
            res: PartResult = fut.result()
            summary.parts.append(res)
            summary.rows += res.rows
            for name, n in res.signal_counts.items():
                summary.signal_counts[name] = summary.signal_counts.get(name, 0) + n
            if progress is not None:
                progress(res)
        files = client.submit(commit_outputs, plan, futures,
                              key=f"tickflow-{plan.run_id}-commit").result()
    except (KilledWorker, FutureCancelledError) as exc:
        _discard(client, plan, futures)
        raise ClusterError(f"the run failed on the cluster: {type(exc).__name__}: {exc} (a "
                           f"worker died repeatedly running it, see the worker logs)") from None
    except BaseException:
        _discard(client, plan, futures)
        raise
    summary.seconds = time.perf_counter() - start
    summary.parts.sort(key=lambda r: r.partition)
    summary.files = files
    for out in plan.outputs:
        parts = [Path(f) for f in files if Path(f).parent == Path(out.directory)]
        size = sum(p.stat().st_size for p in parts if p.exists())
        summary.sink_summaries.append(
            f"parquet: {summary.rows:,} rows x {len(job.output_columns)} columns -> "
            f"{out.directory}/ ({len(parts)} parts, {size / 1e6:.1f} MB)")
    reports = [r.report for r in summary.parts if r.report is not None]
    if reports:
        report = reports[0]
        for other in reports[1:]:
            report.merge(other)
        for r in summary.parts:
            r.report = None
        report.context.quiet = job.context.quiet
        text = report.close()
        summary.report = report.results()
        if text:
            summary.sink_summaries.append(text)
    return summary


def _discard(client: Any, plan: DaskPlan, futures: list[Any]) -> None:
    """Best effort after a failure: cancel what still runs, drop the staged parts."""
    with contextlib.suppress(Exception):
        client.cancel(futures)
        client.submit(discard_staging, plan, key=f"tickflow-{plan.run_id}-discard",
                      pure=False).result(timeout=30)


def run_dask_from_cli(job: CompiledJob, cluster: str | None, workers: int | None,
                      console: Any, *, show_progress: bool) -> RunSummary:
    """``run-job JOB --cluster ...``: the dashboard link, then a partition progress bar."""
    bar: Any = None
    task: Any = None

    def connected(client: Any, partitions: int) -> None:
        nonlocal bar, task
        if job.context.quiet:
            return
        n = len(client.scheduler_info()["workers"])
        console.print(f"dask: {client.scheduler.address}, {n} worker{'s' if n != 1 else ''}, "
                      f"{partitions} key partitions; dashboard {client.dashboard_link}")
        if show_progress and console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            bar = Progress(TextColumn("partitions"), BarColumn(),
                           TextColumn("{task.completed}/{task.total}"),
                           TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(),
                           console=console, transient=True)
            task = bar.add_task("run", total=partitions, rows=0)
            bar.start()

    def advanced(result: PartResult) -> None:
        if bar is not None:
            rows = bar.tasks[0].fields["rows"] + result.rows
            bar.update(task, advance=1, rows=rows)

    try:
        return run_dask(job, address=cluster, workers=workers, on_connect=connected,
                        progress=advanced)
    finally:
        if bar is not None:
            bar.stop()
