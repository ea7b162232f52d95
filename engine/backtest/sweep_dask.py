"""Backtest parameter sweeps on Dask: one task per point, the local sweep's ranked table.

The client expands the points in the local sweep's order and loads and compiles the job once per
feature setting (the kernel parameters a point overrides), so a mistake shows before anything is
submitted. Each point becomes one task holding plain data: the loaded job of its setting (data
paths made absolute, the environment already substituted), its strategy overrides and the
walk-forward split. A worker compiles each setting once and computes its features once (a
per-process cache, as the local process pool has), then runs the point with the functions
:func:`tickflow.engine.backtest.run.run_point` uses, so the table is the local one, value for
value. A point that fails, on the client's compile or on a worker, becomes a row with its
parameters and an ``error`` (ranked last); the other points still run.
"""

from __future__ import annotations

import copy
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickflow.engine.backtest.data import MarketData
from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.sweep import (
    apply_strategy_sets,
    ordered_points,
    overrides_to_sets,
    ranked_rows,
)
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.errors import TickflowError
from tickflow.engine.loader import LoadedJob


@dataclass(frozen=True)
class SweepSetting:
    """Plain data for the points sharing one feature setting: the loaded job and the input."""

    run_id: str
    index: int
    loaded: LoadedJob
    parquet: str | None
    train_fraction: float | None


@dataclass
class PointOutcome:
    """What a point task reports: its metrics by split, or why it failed."""

    index: int
    metrics: dict[str, dict[str, float]] | None
    error: str = ""
    worker: str = ""


_CACHE: dict[tuple[str, int], tuple[CompiledJob, MarketData | None]] = {}
_CACHE_LOCK = threading.Lock()  # a worker with several threads computes a setting once
_CACHE_SETTINGS = 2  # settings kept per worker process (their features can be large)


def make_setting(job: CompiledJob, run_id: str, index: int, parquet: str | None,
                 train_fraction: float | None) -> SweepSetting:
    """A setting as plain data, its parquet paths absolute against the client's directory."""
    from tickflow.engine.executors.dask_tasks import absolute_file_paths

    loaded = copy.deepcopy(job.loaded)
    absolute_file_paths(job, loaded)
    if parquet is not None and not (parquet.startswith("~") or os.path.isabs(parquet)):
        parquet = os.path.abspath(parquet)
    return SweepSetting(run_id, index, loaded, parquet, train_fraction)


def run_point_task(setting: SweepSetting, strategy_sets: tuple[str, ...],
                   index: int) -> PointOutcome:
    """Task: one point's metrics; any failure is returned with the point, not raised."""
    from tickflow.engine.executors.dask_tasks import _worker_address

    try:
        metrics = point_metrics(setting, strategy_sets)
    except Exception as exc:  # the point fails, never the sweep
        text = str(exc) if isinstance(exc, TickflowError) else f"{type(exc).__name__}: {exc}"
        return PointOutcome(index, None, text, _worker_address())
    return PointOutcome(index, metrics, worker=_worker_address())


def point_metrics(setting: SweepSetting,
                  strategy_sets: Sequence[str]) -> dict[str, dict[str, float]]:
    """As :func:`~engine.backtest.run.run_point`, from a loaded job instead of a file."""
    from tickflow.engine.backtest.plan import build_plan
    from tickflow.engine.backtest.run import evaluate, load_market_data

    key = (setting.run_id, setting.index)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if len(_CACHE) >= _CACHE_SETTINGS or any(k[0] != setting.run_id for k in _CACHE):
                _CACHE.clear()
            _CACHE[key] = (compile_job(copy.deepcopy(setting.loaded)), None)
        job, data = _CACHE[key]
        assert job.spec.strategy is not None
        strategy = apply_strategy_sets(job.spec.strategy, strategy_sets)
        plan = build_plan(strategy)
        if data is None or not plan.columns <= set(data.columns):
            data = load_market_data(job, plan, setting.parquet, workers=1)
            _CACHE[key] = (job, data)

    def metrics(part: MarketData) -> dict[str, float]:
        return evaluate(job, part, plan, strategy, with_benchmark=False,
                        per_symbol=False).metrics

    if setting.train_fraction is None:
        return {"all": metrics(data)}
    lo, hi = data.ts[0], data.ts[-1]
    cut = int(np.searchsorted(data.ts, lo + (hi - lo) * setting.train_fraction, side="left"))
    return {"train": metrics(data.take(0, cut)), "test": metrics(data.take(cut, len(data)))}


def run_sweep_dask(job_path: str, sweep: SweepSpec, sets: Sequence[str] = (),
                   parquet: str | None = None, *, address: str | None = None,
                   client: Any = None, workers: int | None = None,
                   on_connect: Callable[[Any, int], None] | None = None,
                   progress: Callable[[PointOutcome], None] | None = None
                   ) -> list[dict[str, Any]]:
    """Run every point as a Dask task; the ranked rows of :func:`run_sweep`.

    Args:
        job_path: the backtest job file (read on the client only).
        sweep: the sweep block.
        sets: ``--set`` overrides of the whole job.
        parquet: ``--parquet`` input, read by the workers (same path on every machine).
        address: ``tcp://host:8786`` or ``local`` (a LocalCluster of ``workers`` processes).
        client: an existing ``distributed.Client`` (then ``address`` is not used).
        workers: worker processes of ``local``; default one per CPU core, at most one per point.
        on_connect: called with the client and the number of points before submitting.
        progress: called with each point's outcome as it finishes.

    Raises:
        ClusterError: unreachable scheduler or no workers.
        JobSpecError: a sweep parameter names no step.
    """
    from tickflow.engine.backtest.run import load_backtest_job
    from tickflow.engine.executors.dask import connect

    ordered = ordered_points(sweep)
    train = sweep.walk_forward.train_fraction if sweep.walk_forward else None
    run_id = uuid.uuid4().hex[:12]
    settings: dict[tuple[str, ...], SweepSetting | str] = {}
    tasks: list[tuple[SweepSetting | str, tuple[str, ...]]] = []
    for point in ordered:
        strategy_sets, step_sets = overrides_to_sets(job_path, point)
        setting = settings.get(tuple(step_sets))
        if setting is None:
            try:
                job = load_backtest_job(job_path, [*sets, *step_sets], parquet)
                setting = make_setting(job, run_id, len(settings), parquet, train)
            except TickflowError as exc:  # e.g. a kernel parameter out of range
                setting = str(exc)
            settings[tuple(step_sets)] = setting
        tasks.append((setting, tuple(strategy_sets)))
    cluster = None
    if client is None:
        if not address:
            from tickflow.engine.executors.dask import ClusterError

            raise ClusterError("executor.kind is dask but no scheduler is given: set "
                               "executor.address (tcp://host:8786) or pass --cluster")
        client, cluster = connect(address, workers=min(workers or os.cpu_count() or 1,
                                                       len(ordered)))
    try:
        results = _submit(client, run_id, tasks, on_connect, progress)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    return ranked_rows(sweep, ordered, results)


def _submit(client: Any, run_id: str, tasks: list[tuple[SweepSetting | str, tuple[str, ...]]],
            on_connect: Callable[[Any, int], None] | None,
            progress: Callable[[PointOutcome], None] | None
            ) -> list[dict[str, dict[str, float]] | str]:
    from distributed import as_completed

    from tickflow.engine.executors.dask import require_workers

    require_workers(client)
    if on_connect is not None:
        on_connect(client, len(tasks))
    results: list[dict[str, dict[str, float]] | str] = [""] * len(tasks)
    futures = {}
    for i, (setting, strategy_sets) in enumerate(tasks):
        if isinstance(setting, str):
            results[i] = setting
            if progress is not None:
                progress(PointOutcome(i, None, setting))
            continue
        fut = client.submit(run_point_task, setting, strategy_sets, i,
                            key=f"tickflow-sweep-{run_id}-point-{i}", pure=False)
        futures[fut] = i
    try:
        for fut in as_completed(list(futures), loop=client.loop):
            i = futures[fut]
            try:
                outcome: PointOutcome = fut.result()
            except Exception as exc:  # e.g. KilledWorker: this point, not the sweep
                outcome = PointOutcome(i, None, f"{type(exc).__name__}: {exc} (on the cluster)")
            results[i] = outcome.error if outcome.metrics is None else outcome.metrics
            if progress is not None:
                progress(outcome)
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


def run_sweep_from_cli(job: CompiledJob, job_path: str, sets: Sequence[str],
                       parquet: str | None, workers: int, console: Any, *,
                       show_progress: bool, quiet: bool) -> tuple[list[dict[str, Any]], int]:
    """``run-job JOB --sweep --cluster ...``: the dashboard link, then a point progress bar.

    Returns:
        The ranked rows and the cluster's worker threads.
    """
    from tickflow.engine.executors.dask import describe_cluster, task_progress

    assert job.spec.sweep is not None
    bar: Any = None
    threads = 0

    def connected(client: Any, points: int) -> None:
        nonlocal bar, threads
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        if quiet:
            return
        console.print(describe_cluster(client, f"{points} sweep points"))
        if show_progress and console.is_terminal:
            bar = task_progress(console, "points", points, ("{task.fields[failed]} failed",),
                                failed=0)

    def advanced(outcome: PointOutcome) -> None:
        if bar is not None:
            failed = bar.tasks[0].fields["failed"] + (outcome.metrics is None)
            bar.update(bar.task_ids[0], advance=1, failed=failed)

    try:
        rows = run_sweep_dask(job_path, job.spec.sweep, sets, parquet,
                              address=job.spec.executor.address, workers=workers,
                              on_connect=connected, progress=advanced)
    finally:
        if bar is not None:
            bar.stop()
    return rows, threads
