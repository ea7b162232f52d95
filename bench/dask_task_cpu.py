"""CPU seconds of the research job's Dask partition tasks, called in this process.

Why: on the shared 2-core machine other jobs decide how much wall time a worker process gets,
but not how much CPU its work takes. Calling ``run_partition`` directly (no scheduler, no
worker process) shows whether splitting the keys into P tasks splits the work, or adds a
per-task cost (each task scanning the whole interleaved input). ``run_local`` is timed too, so
two trees can be compared (``PYTHONPATH=<other tree> python bench/dask_task_cpu.py``).

Usage::

    .venv/bin/python bench/dask_task_cpu.py --rows 1000000                  # interleaved
    .venv/bin/python bench/dask_task_cpu.py --rows 1000000 --parts 8        # run-job partition
    .venv/bin/python bench/dask_task_cpu.py --report                        # with report.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=14)
    ap.add_argument("--parts", type=int, default=0,
                    help="read the input split by `run-job partition --parts N` (0: the file)")
    ap.add_argument("--report", action="store_true", help="keep the report (as report.md)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the least CPU counts")
    args = ap.parse_args(argv)

    from tickflow.connectors.simulator import write_simulated_parquet
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors.dask import make_plan
    from tickflow.engine.executors.dask_tasks import run_partition
    from tickflow.engine.executors.local import run_local
    from tickflow.engine.loader import load_job

    tmp = tempfile.TemporaryDirectory(prefix="tickflow-task-cpu-")
    base = Path(tmp.name)
    ticks = base / "ticks.parquet"
    write_simulated_parquet(ticks, rows=args.rows, symbols=args.symbols, seed=7)
    if args.parts:
        from tickflow.engine.executors.partitioned_dataset import write_partitioned_dataset

        ticks = base / "ticks_by_symbol"
        write_partitioned_dataset(str(base / "ticks.parquet"), str(ticks), parts=args.parts)

    def job() -> object:
        env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(base / "out")}
        report = [f"report.path={base}/out/report.md"] if args.report else ["report=null"]
        compiled = compile_job(load_job(str(ROOT / "jobs" / "research.yaml"), env=env,
                                        overrides=report))
        compiled.context.quiet = True
        return compiled

    def least_cpu(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            c0 = time.process_time()
            fn()
            best = min(best, time.process_time() - c0)
        return best

    run_partition(make_plan(job(), 1), 0)  # numba kernels loaded, files in the page cache
    layout = f"dataset of {args.parts} parts" if args.parts else "interleaved file"
    print(f"{args.rows:,} ticks, {layout}, report {'on' if args.report else 'off'}; "
          f"least CPU of {args.repeat}")
    for partitions in (1, 2, 4):
        plan = make_plan(job(), partitions)
        tasks = [least_cpu(lambda k=k, plan=plan: run_partition(plan, k))
                 for k in range(partitions)]
        print(f"  {partitions} task(s): {' + '.join(f'{t:.2f}' for t in tasks)} = "
              f"{sum(tasks):.2f} CPU-s")
    print(f"  run_local, 2 workers: {least_cpu(lambda: run_local(job(), workers=2)):.2f} CPU-s")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
