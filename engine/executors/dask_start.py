"""``run-job JOB --cluster local``: the LocalCluster starts while the client compiles the job.

Why: a LocalCluster's workers are spawned processes; each starts Python and imports
distributed and the engine (about 1 CPU-s) before it runs a task. Started after the compile,
that start-up followed the client's own imports and compile on the critical path of every run
(about 1 s more on a 2-core machine, whatever the worker count). Started first, in a thread of
the client, the workers come up in their own processes while the client compiles; a compile
error still comes first (the cluster is closed, unused).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any


def local_cluster(workers: int | None, *, dashboard: bool = True,
                  forkserver: bool = False) -> tuple[Any, Any]:
    """A new LocalCluster of ``workers`` single-threaded processes, and a client of it.

    Without ``dashboard`` the scheduler serves none (``--quiet`` prints no link to it): its
    Bokeh app took 0.3-0.6 CPU-s of the client before any worker was spawned. With
    ``forkserver`` (after :func:`start_forkserver`) the workers are forked from it.
    """
    import dask
    from distributed import Client, LocalCluster

    method = "forkserver" if forkserver else dask.config.get(
        "distributed.worker.multiprocessing-method")
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        # without a dashboard the scheduler still serves /health on an HTTP port, 8787 unless
        # told otherwise: a free one, or it warns "Port 8787 is already in use" on stderr
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=":0" if dashboard else None,
                               scheduler_kwargs=None if dashboard else {"dashboard_address": ":0"},
                               silence_logs=logging.CRITICAL)  # worker chatter at shutdown
    return Client(cluster), cluster


# distributed's ``distributed.nanny.pre-spawn-environ`` defaults, which a Nanny puts in its
# own environment just before spawning a worker: one thread for OpenMP, BLAS and Arrow's
# pool per single-threaded worker. A forked worker inherits the forkserver's environment
# instead, so they are set before the server starts.
_PRE_SPAWN_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# set only while the forkserver is spawned: its value is the client's pid (dask_boot.py)
FORKSERVER_PARENT = "TICKFLOW_DASK_FORKSERVER_PARENT"


def start_forkserver() -> bool:
    """Start multiprocessing's forkserver now, loading engine/executors/dask_boot.py; False
    where it cannot be used (then the workers are spawned as before).

    Distributed would set the forkserver's preload itself on first use (importing pandas and
    more into the client to do so); it is told the preload is set.
    """
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    for name, value in _PRE_SPAWN_ENVIRON.items():  # a fork has the server's environment
        os.environ.setdefault(name, value)
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["tickflow.engine.executors.dask_boot"])
    os.environ[FORKSERVER_PARENT] = str(os.getpid())  # dask_boot: "you are the forkserver"
    try:
        forkserver.ensure_running()  # returns at once: the server imports in its own process
    finally:
        os.environ.pop(FORKSERVER_PARENT, None)
    import distributed.utils

    if not hasattr(distributed.utils, "_forkserver_preload_set"):
        return False  # another distributed: its workers are spawned (the server exits with us)
    distributed.utils._forkserver_preload_set = True
    return True


def start_for_job(path: str, sets: list[str], workers: int | None, *,
                  dashboard: bool) -> ClusterStart | None:
    """A :class:`ClusterStart` for ``run-job PATH --cluster local``, unless the job is of a
    mode that never runs on Dask (live, export: streaming; backtest: sweeps start their own).

    Only the job file is read here (no compile): the loader is a light import.
    """
    from tickflow.engine.loader import load_job

    if load_job(path, overrides=list(sets)).data.get("mode") in ("live", "export", "backtest"):
        return None
    forked = start_forkserver()  # first: it loads the workers' imports meanwhile
    return ClusterStart(workers, dashboard=dashboard, forkserver=forked)


def exit_now(code: int) -> None:
    """End ``run-job``'s own process at once after a successful run on its LocalCluster.

    Why: closing the cluster (scheduler, nannies, workers) and the interpreter's own exit
    took 0.2-0.35 s after the outputs were committed, the same for 1 worker as for 2. Nothing
    is left to do: the commit task has published the outputs and the client has written the
    report; each worker process exits by itself when the client's end of its nanny's pipe
    closes (distributed's ``AsyncProcess``), and the forkserver when its alive pipe does.
    """
    from multiprocessing import util

    # multiprocessing's own exit step for the semaphores of the nannies' queues (unlinked and
    # unregistered; else the resource tracker warns of "leaked semaphore objects")
    with contextlib.suppress(Exception):
        util._run_finalizers(0)
    import logging

    logging.shutdown()  # file handlers flushed and closed, as the interpreter's exit would
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class ClusterStart:
    """:func:`local_cluster` running in a thread until :meth:`result` is asked.

    ``exit_with_process``: the caller ends the process right after a successful run
    (:func:`exit_now`), so the run leaves the cluster open (``left_open``) instead of closing
    it; after a failure it is closed as always.
    """

    def __init__(self, workers: int | None, *, dashboard: bool = True,
                 forkserver: bool = False):
        self.exit_with_process = False
        self.left_open = False
        self._client_cluster: tuple[Any, Any] | None = None
        self._error: BaseException | None = None
        self._taken = False
        self._thread = threading.Thread(target=self._start,
                                        args=(workers, dashboard, forkserver),
                                        name="tickflow-dask-start", daemon=True)
        self._thread.start()

    def _start(self, workers: int | None, dashboard: bool, forkserver: bool) -> None:
        try:  # imports distributed only: the client's thread imports the engine meanwhile
            self._client_cluster = local_cluster(workers, dashboard=dashboard,
                                                 forkserver=forkserver)
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def result(self) -> tuple[Any, Any]:
        """``(client, cluster)`` once started; the caller closes them from then on.

        Raises:
            Exception: what starting the cluster raised.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._client_cluster is not None
        self._taken = True
        return self._client_cluster

    def close(self, *, wait: bool = True) -> None:
        """Close the cluster unless :meth:`result` handed it over.

        Without ``wait`` the start is awaited and the cluster closed in a (non-daemon) thread:
        a compile error is printed at once, and the process exits once the cluster is closed.
        """
        if not wait and self._thread.is_alive():
            threading.Thread(target=self.close, name="tickflow-dask-close").start()
            return
        self._thread.join()
        if self._client_cluster is not None and not self._taken:
            client, cluster = self._client_cluster
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(Exception):
                cluster.close()
        self._client_cluster = None
