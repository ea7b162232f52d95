"""The local executor: the driver on threads of this process, over finite sources.

Kernels run morsel-parallel on a thread pool (see ``engine/runtime/pipeline.py``); reading,
computing and writing overlap through small bounded queues. Nothing here differs from any other
mode but where the driver runs.
"""

from __future__ import annotations

from typing import Any

from tickflow.engine.runtime.driver import Driver
from tickflow.engine.runtime.pipeline import (  # noqa: F401  (re-exported: older import path)
    Lane,
    Pipeline,
    RunSummary,
    Writer,
    _prefetch,
    _stages,
    _Writer,
    prefetch,
    timestamp_us,
)


def run_local(job: Any, *, workers: int | None = None, morsel_rows: int | None = None,
              progress: Any = None, reset_state: bool = False) -> RunSummary:
    """Run a compiled job to the end of its sources; returns totals and sink summaries.

    With an on-disk state backend the run checkpoints (engine/state/recovery.py) and resumes
    from the job's last good checkpoint; ``reset_state`` forgets the checkpoints first.
    """
    from tickflow.engine.limits import worker_lanes
    from tickflow.engine.state.recovery import open_checkpointer

    spec = job.spec.executor
    workers = worker_lanes(job.spec, workers)
    morsel_rows = morsel_rows or spec.morsel_rows
    checkpointer = open_checkpointer(job, reset=reset_state)
    driver = Driver(job, workers=workers, morsel_rows=morsel_rows, progress=progress,
                    checkpointer=checkpointer)
    return driver.run()
