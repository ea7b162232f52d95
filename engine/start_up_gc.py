"""Start-up without cyclic garbage collection passes over what start-up builds.

numba, pyarrow, pydantic and a compiled job leave about 150,000 objects that live until the
process ends. The collector walked them again and again while they were made (0.28 s of a
20,000-tick research run) and once more at exit (0.3-0.5 s). A process that starts a run
pauses collection, then freezes what exists (``gc.freeze``: later passes skip it) and turns
collection back on once the run is going. Only processes of their own do this (``run-job``,
a Dask worker's first task): ``tf.run`` in a notebook leaves the caller's collector alone.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator


def pause() -> None:
    """No collection until :func:`resume` (start-up's objects live until exit anyway)."""
    gc.disable()


def resume() -> None:
    """Collection back on, without walking what exists now again; nothing if never paused."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def before_exit() -> None:
    """The interpreter's final passes then skip everything: exit frees it all anyway."""
    gc.freeze()


def resume_after_first_call(hook: Callable[[int], None] | None,
                            ) -> Callable[[int], None] | None:
    """``hook`` (a progress callback), also resuming collection once it is first called: the
    driver's set-up (numba's start above all) and the first batch are start-up too."""
    if gc.isenabled():
        return hook

    def resuming(rows: int) -> None:
        resume()
        if hook is not None:
            hook(rows)

    return resuming


_paused_once = False


@contextlib.contextmanager
def paused_the_first_time() -> Iterator[None]:
    """Pause collection for this block the first time it runs in this process (a Dask
    worker's first task: imports, compile, numba's start), then :func:`resume`."""
    global _paused_once
    if _paused_once or not gc.isenabled():
        yield
        return
    _paused_once = True
    pause()
    try:
        yield
    finally:
        resume()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection while the block runs, unless collection is already off: for a burst of
    short-lived objects that hold no cycles and are freed by reference counting (a poll's
    20,000 Kafka messages, a batch's row tuples), whose allocations would otherwise set off
    young-generation passes over the live job's large heap."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
