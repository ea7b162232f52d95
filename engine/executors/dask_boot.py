"""What the forkserver of ``run-job --cluster local``'s workers loads once, before forking them.

Why: each spawned worker process imported distributed, numpy, pyarrow, numba and the engine,
and set up numba's registries (about 1.3 CPU-s), before its first task could start; two
workers did all of it twice, and only once the client had imported distributed and started the
scheduler. The forkserver (engine/executors/dask_start.py) is started first, imports this
module while the client starts up, and each worker is a fork of it that has all of it already.
Only imports and numba's own set-up happen here: no thread, no file, nothing of a job.
"""

from __future__ import annotations

import contextlib

import distributed.nanny  # noqa: F401  (the worker process's own code)

import tickflow.engine.executors.dask_tasks  # a task's imports
import tickflow.engine.runtime.driver  # noqa: F401  (imported by a task's driver)


def _numba_registries() -> None:
    """numba loads its typing and lowering registries (and scipy's BLAS) on the first kernel
    a process compiles or loads from the cache: done here once instead of in every worker."""
    with contextlib.suppress(Exception):  # an internal of numba's: a worker does it if need be
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()


_numba_registries()
