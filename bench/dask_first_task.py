"""A Dask worker's first partition task, in a fresh process and without Dask: its start-up.

A worker process pays the engine's imports, the job's compile and numba's start on its first
task (engine/executors/dask_tasks.py); every later task reuses them. This times that first
task the way a worker runs it, so that two checkouts can be compared whole-process::

    TICKS=ticks.parquet PYTHONPATH=. .venv/bin/python bench/dask_first_task.py OUT_DIR
    /usr/bin/time -v env TICKS=... PYTHONPATH=... .venv/bin/python bench/dask_first_task.py OUT

It prints the task's rows, and the process's wall and CPU seconds up to the task's end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

_T0, _C0 = time.perf_counter(), time.process_time()
# bench/dask.py must not shadow the dask package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> int:
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors import dask_tasks
    from tickflow.engine.executors.dask import make_plan
    from tickflow.engine.loader import load_job

    out = sys.argv[1]
    loaded = load_job("jobs/research.yaml",
                      overrides=["report=null", f"sinks[0].path={out}/first_task.parquet"])
    plan = make_plan(compile_job(loaded), 2)  # what the client sends: the job as plain data
    result = dask_tasks.run_partition(plan, 0)
    print(f"first task: {result.rows:,} rows; process wall {time.perf_counter() - _T0:.2f} s, "
          f"CPU {time.process_time() - _C0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
