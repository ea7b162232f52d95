"""Run a sweep's points (threads, processes or Dask) and the ``run-job JOB --sweep`` command.

Kept apart from :mod:`tickflow.engine.backtest.sweep` (points, ranking, warnings): this module
calls the backtest runner, which itself uses the sweep's overrides, so the dependency goes
runner <- sweep_run and never back.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tickflow.engine.backtest.report import print_sweep, write_sweep
from tickflow.engine.backtest.run import output_paths, run_point
from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.sweep import multiple_testing_warning, ordered_points, ranked_rows
from tickflow.engine.errors import JobSpecError, Problem


def _point_task(args: tuple[str, dict[str, Any], tuple[str, ...], str | None, float | None]
                ) -> dict[str, dict[str, float]]:
    job_path, overrides, sets, parquet, train = args
    return run_point(job_path, overrides, sets=sets, parquet=parquet, train_fraction=train)


def run_sweep(job_path: str, sweep: SweepSpec, sets: Sequence[str] = (),
              parquet: str | None = None, workers: int = 0,
              pool: str | None = None) -> list[dict[str, Any]]:
    """Run every point; rows of ``{param: value, ..., "<split>.<metric>": value}``, ranked.

    ``pool`` (default ``sweep.pool``): ``threads`` or ``processes``.
    """
    pool = pool or sweep.pool
    ordered = ordered_points(sweep)
    train = sweep.walk_forward.train_fraction if sweep.walk_forward else None
    tasks = [(job_path, p, tuple(sets), parquet, train) for p in ordered]
    workers = min(workers or sweep.workers or (os.cpu_count() or 1), len(tasks))
    if workers <= 1:
        results = [_point_task(t) for t in tasks]
    elif pool == "threads":
        from concurrent.futures import ThreadPoolExecutor

        first = _point_task(tasks[0])  # fills the shared feature cache before threads start
        with ThreadPoolExecutor(workers) as threads:
            results = [first, *threads.map(_point_task, tasks[1:])]
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # threads and numba: never fork
        chunk = max(1, math.ceil(len(tasks) / workers))
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_point_task, tasks, chunksize=chunk))
    return ranked_rows(sweep, ordered, results)


def run_sweep_command(job: Any, job_path: str, sets: Sequence[str], parquet: str | None,
                      workers: int, console: Any, quiet: bool) -> int:
    """``run-job JOB --sweep``: run, print the ranked table and warning, write the outputs."""
    from rich.markup import escape

    sweep = job.spec.sweep
    if sweep is None:
        m = job.loaded.marks.find(("mode",))
        raise JobSpecError([Problem(m.file, m.line, m.col, "sweep",
                                    "--sweep needs a `sweep:` block in the job")])
    start = time.perf_counter()
    workers = min(workers, sweep.workers or workers)
    shown = sweep
    if job.spec.executor.kind == "dask":  # executor.address, or --cluster
        from tickflow.engine.backtest.sweep_dask import run_sweep_from_cli

        rows, workers = run_sweep_from_cli(
            job, job_path, sets, parquet, workers, console, quiet=quiet,
            show_progress=job.spec.executor.progress and not quiet)
        shown = sweep.model_copy(update={"pool": "dask worker threads"})  # printed only
    else:
        rows = run_sweep(job_path, sweep, sets, parquet, workers)
    split = "train" if sweep.walk_forward else "all"
    failed = [r for r in rows if "error" in r]
    warning = multiple_testing_warning([r for r in rows if "error" not in r], split)
    paths = write_sweep(job, rows, sweep, warning, output_paths(job))
    if not quiet:
        print_sweep(rows, shown, warning, paths, console, time.perf_counter() - start, workers)
    for r in failed:  # shown even with --quiet: a point that did not run is not a result
        params = ", ".join(f"{k}={r[k]}" for k in sweep.parameters)
        console.print(f"[red]failed point[/] {escape(params)}: {escape(r['error'])}",
                      highlight=False)
    return 1 if failed and len(failed) == len(rows) else 0
