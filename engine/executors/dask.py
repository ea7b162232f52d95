"""The Dask executor: the same job on a cluster, partitioned by key, with identical results.

Only the executor changes, never the job. The client compiles the job once (so every mistake is
reported before anything is submitted), then submits one task per key partition (keys placed
by their rows, :mod:`tickflow.engine.executors.placement`, else a stable CRC-32 of the symbol
modulo ``partitions``, :mod:`tickflow.engine.executors.partition`). Each task compiles the
job again on its worker from the loaded YAML data (plain, picklable data: nothing compiled
crosses the wire), reads the Parquet input itself, keeps the rows of its keys
in arrival order, runs the same :class:`~engine.executors.local.Pipeline` as the local executor
(so every key meets the same kernels in the same order with the same state) and writes its own
``part-NNNNN.parquet`` with the provenance metadata. The client never ships data.

Output layout: a parquet sink's ``path`` becomes a directory of parts, one per partition
(``out/research_features.parquet/part-00000.parquet`` ...), readable as one dataset by the
parquet source, pyarrow, polars or pandas. Parts are written into a hidden staging directory
beside it; a final step (a task on a worker, or the client itself on the LocalCluster it
started) checks that every partition's part is there and swaps the staging directory in, so
a killed worker (whose partitions the scheduler recomputes elsewhere), a failed run or a rerun
with another partition count never leaves a mix of parts. Each task also feeds
its output to its own research-report sink (its keys' statistics and grid prices); the client
merges these and writes the report, so the output is never read back.

Workers must see the input and output paths at the same place as the client (a shared volume
or the same machine); relative paths are made absolute against the client's directory.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tickflow.engine.compile import CompiledJob
from tickflow.engine.contract import FileSource, MergeableSink, PartitionedSink
from tickflow.engine.executors.dask_start import ClusterStart, local_cluster
from tickflow.engine.executors.dask_tasks import (
    ClusterError,
    DaskPlan,
    PartResult,
    absolute_file_paths,
    commit_outputs,
    commit_parts_of,
    discard_staging,
    run_partition,
)
from tickflow.engine.executors.local import RunSummary
from tickflow.engine.executors.placement import run_placement

__all__ = ["ClusterError", "ClusterStart", "DaskRunSummary", "connect", "describe_cluster",
           "make_plan", "require_workers", "run_dask", "run_dask_from_cli", "run_partition",
           "task_progress"]

CONNECT_TIMEOUT_S = 5.0
WORKER_WAIT_S = 30.0


@dataclass
class DaskRunSummary(RunSummary):
    """The local executor's totals plus what only a cluster run has."""

    partitions: int = 0
    parts: list[PartResult] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    dashboard: str = ""
    single_task_reason: str | None = None  # why the graph was not split by key


def connect(address: str, *, workers: int | None = None,
            timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[Any, Any]:
    """A client for ``address`` (``tcp://host:8786``) or a new LocalCluster (``local``).

    Returns:
        ``(client, cluster)``; ``cluster`` is None unless this call started it.

    Raises:
        ClusterError: the scheduler did not answer within ``timeout_s`` seconds.
    """
    from distributed import Client

    if address == "local":
        return local_cluster(workers)
    try:
        return Client(address, timeout=timeout_s, set_as_default=False), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within "
                           f"{timeout_s:g} s ({type(exc).__name__}: {exc}); start one with "
                           f"`dask scheduler` and `dask worker {address}`, or run with "
                           f"--cluster local") from None


def require_workers(client: Any) -> int:
    """Wait for a worker; the cluster's worker threads (what runs tasks at once).

    Raises:
        ClusterError: no worker joined within ``WORKER_WAIT_S`` seconds.
    """
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"the Dask scheduler at {client.scheduler.address} has no "
                           f"workers (waited {WORKER_WAIT_S:g} s)") from None
    return sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())


def describe_cluster(client: Any, what: str) -> str:
    """The line a run prints on connecting: scheduler, workers, ``what``, dashboard link."""
    n = len(client.scheduler_info()["workers"])
    return (f"dask: {client.scheduler.address}, {n} worker{'s' if n != 1 else ''}, {what}; "
            f"dashboard {client.dashboard_link}")


def task_progress(console: Any, label: str, total: int, extra: tuple[str, ...] = (),
                  **fields: Any) -> Any:
    """A started, transient rich bar of ``total`` tasks; ``extra`` columns show ``fields``.

    Advance it with ``bar.update(bar.task_ids[0], advance=1)``; ``bar.stop()`` when done.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   *(TextColumn(text) for text in extra), TimeElapsedColumn(),
                   console=console, transient=True)
    bar.add_task(label, total=total, **fields)
    bar.start()
    return bar


def check_supported(job: CompiledJob) -> None:
    """The Dask executor splits file sources by key and writes sinks that split or merge.

    Raises:
        ClusterError: a source that is not a :class:`FileSource`, or a sink that is neither a
            :class:`PartitionedSink` nor a :class:`MergeableSink`.
    """
    for use in job.sources:
        source = use.definition.cls(use.config, job.context)
        if not isinstance(source, FileSource):
            raise ClusterError(f"the dask executor reads file sources (each worker reads its "
                               f"keys' rows itself); source {use.label!r} is kind "
                               f"{use.definition.name!r}")
    for use in job.sinks:
        sink = use.definition.cls(use.config, job.context)
        if not isinstance(sink, PartitionedSink | MergeableSink):
            raise ClusterError(f"the dask executor writes sinks that split by key partition "
                               f"(parquet: a directory of parts) or merge (the report); "
                               f"sinks[{use.index}] is kind {use.definition.name!r}")


def single_task_reason(job: CompiledJob) -> str | None:
    """Why the job's graph cannot be split by key (then it runs in one task), or None.

    A graph splits when every stream is keyed by the job's key: each key's rows, in every
    stream, then meet the same steps in the same order in one task.
    """
    for step in job.steps:
        if step.is_cross_key:
            return f"step '{step.step_id}' ({step.definition.name}) reads several keys' rows"
    for op in job.operators:
        if op.key != job.key:
            return (f"step '{op.step_id}' ({op.definition.name}) groups by {op.key!r}, not "
                    f"the job's key {job.key!r}")
    return None


def make_plan(job: CompiledJob, partitions: int) -> DaskPlan:
    """The plan for a run: file paths made absolute, one output per partitioned sink."""
    run_id = uuid.uuid4().hex[:12]
    loaded = copy.deepcopy(job.loaded)
    absolute_file_paths(job, loaded)
    outputs, streams = [], []
    for position, (use, stream) in enumerate(zip(job.sinks, job.sink_streams, strict=True)):
        if isinstance(use.definition.cls(use.config, job.context), PartitionedSink):
            outputs.append(position)
            streams.append(stream)
    sources = [use.definition.cls(use.config, job.context) for use in job.sources]
    placement = run_placement(sources, job.key, partitions)
    return DaskPlan(run_id=run_id, loaded=loaded, context=job.context, partitions=partitions,
                    morsel_rows=job.spec.executor.morsel_rows, outputs=tuple(outputs),
                    streams=tuple(streams), placement=dict(placement) if placement else None)


def run_dask(job: CompiledJob, *, address: str | None = None, client: Any = None,
             partitions: int | None = None, workers: int | None = None,
             on_connect: Callable[[Any, int], None] | None = None,
             progress: Callable[[PartResult], None] | None = None,
             started: ClusterStart | None = None) -> DaskRunSummary:
    """Run a compiled job on a Dask cluster; returns the same totals as the local executor.

    Args:
        job: the compiled job (compiled on the client, so problems show before submitting).
        address: ``tcp://host:8786`` or ``local``; default ``executor.address``.
        client: an existing ``distributed.Client`` (then ``address`` is not used).
        partitions: key partitions; default ``executor.partitions``, else one per worker thread.
        workers: worker processes of ``local``.
        on_connect: called with the client and the partition count before submitting.
        progress: called with each partition's result as it finishes.
        started: a LocalCluster already starting (``run-job --cluster local``); this run
            closes it, unless ``started.exit_with_process`` and the run succeeded
            (``address`` and ``workers`` are then not used).

    Raises:
        ClusterError: unreachable scheduler, no workers, or a partition that kept failing.
    """
    cluster = None
    try:
        check_supported(job)
        if client is None and started is not None:
            client, cluster = started.result()
        elif client is None:
            address = address or job.spec.executor.address
            if not address:
                raise ClusterError("executor.kind is dask but no scheduler is given: set "
                                   "executor.address (tcp://host:8786) or pass --cluster")
            client, cluster = connect(address, workers=workers)
    finally:
        if started is not None:  # unless handed over above: closed in the background
            started.close(wait=False)
    try:
        summary = _submit(job, client, partitions, on_connect, progress,
                          local=cluster is not None)
    except BaseException:
        if cluster is not None:
            client.close()
            cluster.close()
        raise
    if cluster is not None:
        if started is not None and started.exit_with_process:
            started.left_open = True  # the process ends now: its workers exit with it
        else:
            client.close()
            cluster.close()
    return summary


def _submit(job: CompiledJob, client: Any, partitions: int | None,
            on_connect: Callable[[Any, int], None] | None,
            progress: Callable[[PartResult], None] | None, *,
            local: bool = False) -> DaskRunSummary:
    """Submit the partition tasks and publish their parts; ``local``: the cluster runs on this
    machine (a LocalCluster this run started), so the client publishes them itself instead of
    a commit task on a worker (a round trip through the scheduler after the last task)."""
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    threads = require_workers(client)
    count = partitions or job.spec.executor.partitions or max(1, threads)
    reason = single_task_reason(job)
    if reason is not None:
        count = 1  # those rows must stay together
        if not job.context.quiet:
            print(f"tickflow: the job runs in one dask task: {reason}", file=sys.stderr)
    plan = make_plan(job, count)
    if on_connect is not None:
        on_connect(client, count)
    summary = DaskRunSummary(signal_counts=dict.fromkeys(job.signals, 0), partitions=count,
                             dashboard=str(client.dashboard_link or ""),
                             single_task_reason=reason)
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
            for name, n in res.quality_counts.items():
                summary.quality_counts[name] = summary.quality_counts.get(name, 0) + n
            if progress is not None:
                progress(res)
        if local:
            files = commit_parts_of(job, plan, summary.parts)
        else:
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
    summary.files = [f for names in files for f in names]
    for position, names in zip(plan.outputs, files, strict=True):
        use = job.sinks[position]
        parts = [Path(f) for f in names]
        directory = parts[0].parent  # at least one part: one per partition
        size = sum(p.stat().st_size for p in parts if p.exists())
        summary.sink_summaries.append(
            f"{use.definition.name}: {summary.rows:,} rows x {len(job.output_columns)} "
            f"columns -> {directory}/ ({len(parts)} parts, {size / 1e6:.1f} MB)")
    _merge_results(job, summary)
    return summary


def _merge_results(job: CompiledJob, summary: DaskRunSummary) -> None:
    """Merge the partitions' mergeable sinks (the report) on the client and close them."""
    kept = [r.merged for r in summary.parts if r.merged]
    for position in range(len(kept[0]) if kept else 0):
        merged = kept[0][position]
        for other in kept[1:]:
            merged.merge(other[position])
        merged.context.quiet = job.context.quiet
        text = merged.close()
        summary.report = merged.results()
        if text:
            summary.sink_summaries.append(text)
    for r in summary.parts:
        r.merged = []


def _discard(client: Any, plan: DaskPlan, futures: list[Any]) -> None:
    """Best effort after a failure: cancel what still runs, drop the staged parts."""
    with contextlib.suppress(Exception):
        client.cancel(futures)
        client.submit(discard_staging, plan, key=f"tickflow-{plan.run_id}-discard",
                      pure=False).result(timeout=30)


def run_dask_from_cli(job: CompiledJob, cluster: str | None, workers: int | None,
                      console: Any, *, show_progress: bool,
                      started: ClusterStart | None = None) -> RunSummary:
    """``run-job JOB --cluster ...``: the dashboard link, then a partition progress bar."""
    bar: Any = None

    def connected(client: Any, partitions: int) -> None:
        nonlocal bar
        if job.context.quiet:
            return
        console.print(describe_cluster(client, f"{partitions} key partitions"))
        if show_progress and console.is_terminal:
            bar = task_progress(console, "partitions", partitions,
                                ("{task.fields[rows]:,} rows",), rows=0)

    def advanced(result: PartResult) -> None:
        if bar is not None:
            rows = bar.tasks[0].fields["rows"] + result.rows
            bar.update(bar.task_ids[0], advance=1, rows=rows)

    try:
        return run_dask(job, address=cluster, workers=workers, on_connect=connected,
                        progress=advanced, started=started)
    finally:
        if bar is not None:
            bar.stop()
