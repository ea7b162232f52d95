"""What ``run-job``'s own process does at its start and its end, and an in-process caller must
not (``tf.run`` in a notebook, ``main([...])`` in a test, a bench timing phases in process). A
Dask worker's first task and the ``--cluster local`` forkserver start numba the same way.

- :func:`numba_blas_alone`: numba's target initialisation (its first cache load or compile)
  checks for BLAS with ``import scipy.linalg.cython_blas`` (``numba.np.arraymath``'s
  ``_HAVE_BLAS``). Importing that submodule runs ``scipy.linalg``'s package import first, which
  clones numpy's namespace for the array API (importing ``numpy.f2py``, ``numpy.testing`` and
  more) and loads all of scipy.linalg: 0.15-0.2 CPU-s of a run's start-up, for a check. The
  module numba needs is a self-contained extension (scipy's Cython BLAS wrappers): it is loaded
  here under its own name, so numba finds it in ``sys.modules`` and its check passes as before,
  with the same function pointers. ``scipy.linalg`` itself is imported as usual by whoever
  asks for it later (its ``__init__`` does not import ``cython_blas``).
- :func:`exit_now`: after the command has returned, the interpreter's own teardown (freeing
  every module and object of numba, LLVM, pyarrow and the job, Arrow's thread pools) took
  0.05-0.1 CPU-s and 0.1-0.2 s of wall time before the process was gone. The exit handlers
  still run (``atexit``: logging, weakref finalizers such as temporary folders), the standard
  streams are flushed, then ``os._exit`` ends the process with the command's code.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading

_BLAS = "scipy.linalg.cython_blas"


def numba_blas_alone() -> bool:
    """Load scipy's Cython BLAS module without ``scipy.linalg``'s package import; False (and
    nothing changed) when scipy is absent, already imported that far, or laid out otherwise."""
    if _BLAS in sys.modules or "scipy.linalg" in sys.modules:
        return False
    try:
        scipy = importlib.util.find_spec("scipy")  # finds the package without importing it
        if scipy is None or not scipy.submodule_search_locations:
            return False
        folder = os.path.join(next(iter(scipy.submodule_search_locations)), "linalg")
        finder = importlib.machinery.FileFinder(
            folder, (importlib.machinery.ExtensionFileLoader,
                     importlib.machinery.EXTENSION_SUFFIXES))
        spec = finder.find_spec(_BLAS)
        if spec is None or spec.loader is None:
            return False
        module = importlib.util.module_from_spec(spec)
        sys.modules[_BLAS] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_BLAS]
            raise
    except Exception:  # numba then imports it the usual way
        return False
    return True


def is_run_job(main: object) -> bool:
    """Whether this process is ``run-job`` itself: its ``__main__`` is the ``run-job`` console
    script (which imported ``main`` and exits with what it returns) or ``python -m
    tickflow.engine.cli``, and no profiler or tracer waits for the process's normal end to write
    what it gathered. A script of the user's that calls ``main()`` is not."""
    if sys.getprofile() is not None or sys.gettrace() is not None or sys.flags.inspect:
        return False
    entry = sys.modules.get("__main__")
    if entry is None:
        return False
    if getattr(getattr(entry, "__spec__", None), "name", None) == "tickflow.engine.cli":
        return True
    script = os.path.basename(getattr(entry, "__file__", None) or "")
    return getattr(entry, "main", None) is main and script == "run-job"


def exit_now(code: int) -> None:
    """End the process with ``code`` after the exit handlers, without the interpreter's
    teardown; returns (the caller exits as usual) while a non-daemon thread is still alive,
    which a normal exit would wait for."""
    current = threading.current_thread()
    if current is not threading.main_thread() or any(
            t is not current and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
