"""Run-time checkpointing for an executor: when to checkpoint, what to record, how to resume.

The executor calls :meth:`Checkpointer.resume` once before reading (it restores the lanes' state
and the key index, seeks the source and sinks), :meth:`Checkpointer.due` after each batch, and
:meth:`Checkpointer.commit` when due and at the end (``is_final``). Sources and sinks take part
through small optional hooks documented in ``connectors/base.py``: ``position()``/``seek()`` on
sources, ``seek()``/``checkpoint()``/``release()`` on sinks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from tickflow.engine.checkpoint import (
    CheckpointStore,
    Manifest,
    layout_description,
    layout_sha256,
    spec_sha256,
    state_root,
)
from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import StateBackend, StateSnapshot, get_backend
from tickflow.engine.state.lanes import gather, scatter
from tickflow.engine.state.lock import acquire_state_lock

DEFAULT_EVERY = "10s"


def parse_every(every: str | int | None) -> tuple[int, float]:
    """(batches, seconds) between checkpoints; exactly one is non-zero."""
    from tickflow.kernels.base import parse_duration_us

    value = DEFAULT_EVERY if every is None else every
    if isinstance(value, int):
        return value, 0.0
    return 0, parse_duration_us(value) / 1e6


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class Checkpointer:
    """Checkpoints one run of a job to its state backend.

    Args:
        job: the compiled job.
        reset: forget existing checkpoints first (``--reset-state``).
        log: where notes go (resume, fallbacks); stderr by default.
    """

    def __init__(self, job: Any, *, reset: bool = False,
                 log: Callable[[str], None] | None = None):
        state = job.spec.state
        self.job = job
        self.backend: StateBackend = get_backend(state.backend)
        self.store = CheckpointStore(state_root(job.spec.name, state.path),
                                     keep=state.checkpoint.keep)
        acquire_state_lock(self.store.root)  # one job per state folder (engine/state/lock.py)
        self.every_batches, self.every_s = parse_every(state.checkpoint.every)
        self.log = log or _stderr
        self.spec_hash = spec_sha256(job.spec)
        self.layout = layout_description(job)
        self.layout_hash = layout_sha256(self.layout)
        self.rows = 0
        self.batches = 0
        self.positions: list[Any] = [None]
        self._since = 0
        self._last = time.monotonic()
        self.seq = 0
        self.resumed_from: Manifest | None = None
        self.page_keys = state.page_keys
        self.pager: Any = None
        if reset:
            self.store.reset()

    # ----------------------------------------------------------------- resume

    def processor(self, pipeline: Any) -> Callable[[Any], Any]:
        """What processes a batch: the pipeline itself, or its pager with ``page_keys``."""
        if not self.page_keys:
            return pipeline.process
        from tickflow.engine.state.paging import PagedState

        self.pager = PagedState(pipeline, self.backend, self.store.root / "pages",
                                self.page_keys)
        return self.pager.process

    def resume(self, pipeline: Any, sources: list[Any], sinks: list[Any]) -> Manifest | None:
        """Restore the newest good unfinished checkpoint, or start fresh; seeks sources/sinks."""
        problems: list[str] = []
        found = self.store.latest_good(self.backend, problems)
        for p in problems:
            self.log(f"tickflow: skipping a bad checkpoint: {p}")
        self.seq = self.store.next_seq()
        if found is None or found[0].is_final:
            for s in sinks:
                _call(s, "seek", None)
            if self.pager is not None:
                self.pager.reset()
            return None
        manifest, snapshot = found
        self._check_layout(manifest)
        if manifest.page_keys != self.page_keys:
            raise StateError(f"checkpoint {manifest.seq} was written with state.page_keys "
                             f"{manifest.page_keys}, the job now says {self.page_keys}; run "
                             f"with --reset-state to start over")
        if len(manifest.sources) != len(sources):
            raise StateError(f"checkpoint {manifest.seq} recorded {len(manifest.sources)} "
                             f"source(s), the job has {len(sources)}; run with --reset-state "
                             f"to start over")
        for src, position in zip(sources, manifest.sources, strict=True):
            if not hasattr(src, "seek"):
                raise StateError(f"source kind {type(src).__name__} cannot resume from a "
                                 f"position; run with --reset-state to start over")
            src.seek(position)
        for sink, position in zip(sinks, _pad(manifest.sinks, len(sinks)), strict=True):
            if hasattr(sink, "seek"):
                sink.seek(position)
            else:
                self.log(f"tickflow: sink {type(sink).__name__} keeps no position: it sees "
                         f"only the rows after the resume")
        if self.pager is not None:
            self.pager.restore_from(self.store.dir / f"{manifest.seq:08d}", snapshot.keys)
        else:
            scatter(pipeline, snapshot)
        self.rows, self.batches = manifest.rows, manifest.batches
        self.positions = list(manifest.sources)
        self.resumed_from = manifest
        if manifest.spec_sha256 != self.spec_hash:
            self.log("tickflow: the job spec changed since the checkpoint, but not its state "
                     "layout; resuming")
        self.log(f"tickflow: resumed from checkpoint {manifest.seq} ({manifest.rows:,} rows "
                 f"done, {manifest.n_keys:,} keys)")
        return manifest

    def _check_layout(self, manifest: Manifest) -> None:
        if manifest.layout_sha256 == self.layout_hash:
            return
        raise StateError(
            f"the state in {self.store.dir} was written by a job with a different state layout "
            f"(steps, kernels or window sizes changed since checkpoint {manifest.seq}); "
            f"run with --reset-state to start over")

    # ----------------------------------------------------------------- commit

    def advance(self, rows: int, position: Any) -> bool:
        """Count a processed batch and the source position after it; True when one is due."""
        self.rows += rows
        self.batches += 1
        self._since += 1
        self.positions = [position]
        if self.every_batches:
            return self._since >= self.every_batches
        return time.monotonic() - self._last >= self.every_s

    def release(self, sinks: list[Any]) -> None:
        """After the final checkpoint: sinks drop their recovery files."""
        for s in sinks:
            _call(s, "release")

    def commit(self, pipeline: Any, sinks: list[Any], is_final: bool = False) -> Manifest:
        """Checkpoint now: sinks commit first, then state and the manifest (the commit point).

        Sink output committed here but not covered by a manifest (a crash in between) is
        discarded by the sinks' ``seek`` on resume.
        """
        sink_positions = [_call(s, "checkpoint") for s in sinks]
        snapshot = gather(pipeline) if self.pager is None else \
            StateSnapshot(keys=list(self.pager.keys.values))
        manifest = Manifest(seq=self.seq, job_name=self.job.spec.name,
                            spec_sha256=self.spec_hash, layout_sha256=self.layout_hash,
                            backend=self.backend.name, n_keys=snapshot.n_keys, rows=self.rows,
                            batches=self.batches, sources=list(self.positions),
                            sinks=sink_positions, is_final=is_final,
                            page_keys=self.page_keys)
        self.store.commit(self.backend, snapshot, manifest,
                          extra=self.pager.link_into if self.pager is not None else None)
        self.seq += 1
        self._since = 0
        self._last = time.monotonic()
        return manifest


def open_checkpointer(job: Any, *, reset: bool = False,
                      log: Callable[[str], None] | None = None) -> Checkpointer | None:
    """A checkpointer for a job whose backend keeps state on disk; None for ``memory``."""
    backend = get_backend(job.spec.state.backend)
    if not backend.is_persistent:
        return None
    if log is None and getattr(job.context, "quiet", False):
        log = _quiet
    return Checkpointer(job, reset=reset, log=log)


def _quiet(message: str) -> None:
    return None


def with_positions(source: Any, batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    """Pair each batch with the source position just after it (asked right after the yield)."""
    position = getattr(source, "position", None)
    for batch in batches:
        yield batch, (position() if position is not None else None)


def _call(obj: Any, method: str, *args: Any) -> Any:
    fn = getattr(obj, method, None)
    return fn(*args) if fn is not None else None


def _pad(values: list[Any], n: int) -> list[Any]:
    return (list(values) + [None] * n)[:n]
