"""What the forkserver of ``run-job --cluster local``'s workers loads once, before forking them.

Why: each spawned worker process imported distributed, numpy, pyarrow, numba and the engine,
and set up numba's registries (about 1.3 CPU-s), before its first task could start; two
workers did all of it twice, and only once the client had imported distributed and started the
scheduler. The forkserver (engine/executors/dask_start.py) is started first, imports this
module while the client starts up, and each worker is a fork of it that has all of it already.
Only imports and numba's own set-up happen here: no thread, no file, nothing of a job; and, in
the forkserver only, an exit without the interpreter's teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

import distributed.nanny  # noqa: F401  (the worker process's own code)

import tickflow.engine.executors.dask_tasks  # a task's imports
import tickflow.engine.runtime.driver  # noqa: F401  (imported by a task's driver)
from tickflow.engine import own_process


def _numba_registries() -> None:
    """numba loads its typing and lowering registries (and scipy's BLAS) on the first kernel
    a process compiles or loads from the cache: done here once instead of in every worker;
    scipy's BLAS module alone, without scipy.linalg (engine/own_process.py)."""
    own_process.numba_blas_alone()
    with contextlib.suppress(Exception):  # an internal of numba's: a worker does it if need be
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()


_numba_registries()


def _exit_at_once() -> None:
    """The forkserver's exit (once its last client has gone) skips the interpreter's teardown
    of all it loaded: 0.3-0.45 CPU-s after ``run-job`` had returned, taken from whatever ran
    next. It holds no file or state to flush but its standard streams."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


# only in the forkserver itself (whose parent, the client, set this while spawning it): its
# forked workers end by os._exit anyway, and no other process that imports this module is
# cut short
if os.environ.pop("TICKFLOW_DASK_FORKSERVER_PARENT", None) == str(os.getppid()):
    atexit.register(_exit_at_once)
