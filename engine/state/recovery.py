"""Run-time checkpointing for an executor: when to checkpoint, what to record, how to resume.

The driver calls :meth:`Checkpointer.resume` once before reading (it restores the state of
every node of the graph, seeks the sources and sinks), :meth:`Checkpointer.advance` after each
batch, and :meth:`Checkpointer.commit` when due and at the end (``is_final``). Sources and sinks
take part by declaring the capabilities of ``engine/contract.py``: ``ResumableSource``
(``position()``/``seek()``) and ``CheckpointedSink`` (``seek()``/``checkpoint()``/
``release()``). The state comes from anything with ``gather(extra)`` and ``scatter(snapshot,
blob)`` (the stream graph; a lone pipeline is wrapped).
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
from tickflow.engine.checkpoint_process import CommitFiles
from tickflow.engine.contract import (
    CheckpointedSink,
    DeferredCheckpointSink,
    ReleasableSink,
    ResumableSource,
)
from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import StateBackend, StateSnapshot, get_backend
from tickflow.engine.state.lanes import gather, scatter
from tickflow.engine.state.lock import acquire_state_lock

NODES_FILE = "graph_nodes.pickle"  # the graph's operators and extras (engine/runtime/graph.py)

DEFAULT_EVERY = "10s"


def parse_every(every: str | int | None) -> tuple[int, float]:
    """(batches, seconds) between checkpoints; exactly one is non-zero."""
    from tickflow.kernels.base import parse_duration_us

    value = DEFAULT_EVERY if every is None else every
    if isinstance(value, int):
        return value, 0.0
    return 0, parse_duration_us(value) / 1e6


class PipelineState:
    """One pipeline seen as a graph of one stream (the live runner's kernel segment), with
    the quality stages that feed it (their state is pickled beside the kernel state)."""

    def __init__(self, pipeline: Any, stages: dict[str, Any] | None = None):
        self.pipeline = pipeline
        self.stages = stages or {}

    def gather(self, extra: dict[str, Any] | None = None) -> tuple[StateSnapshot, bytes | None]:
        if not self.stages:
            return gather(self.pipeline), None
        import pickle

        quality = {name: st.snapshot() for name, st in self.stages.items()}
        return gather(self.pipeline), pickle.dumps({"extra": {"quality": quality}})

    def scatter(self, snapshot: StateSnapshot, blob: bytes | None) -> dict[str, Any]:
        scatter(self.pipeline, snapshot)
        if blob is None:
            return {}
        import pickle

        # written by this job's own checkpoint and verified against its manifest's sha256
        extra = dict(pickle.loads(blob).get("extra", {}))
        for name, state in extra.get("quality", {}).items():
            if name in self.stages:
                self.stages[name].restore(state)
        return extra


def _as_state(state: Any) -> Any:
    from tickflow.engine.runtime.pipeline import Pipeline

    return PipelineState(state) if isinstance(state, Pipeline) else state


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
        self.restored_extra: dict[str, Any] = {}
        # called when a run starts from empty state (live: read from the start, not from the
        # consumer group's offsets)
        self.on_fresh_start: Callable[[], Any] | None = None
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

    def resume(self, state: Any, sources: list[Any], sinks: list[Any]) -> Manifest | None:
        """Restore the newest good unfinished checkpoint, or start fresh; seeks sources/sinks.

        What the graph's ``extra`` held (e.g. the quality stages) is in ``restored_extra``.
        """
        state = _as_state(state)
        self.positions = [None] * len(sources)
        problems: list[str] = []
        found = self.store.latest_good(self.backend, problems)
        for p in problems:
            self.log(f"tickflow: skipping a bad checkpoint: {p}")
        self.seq = self.store.next_seq()
        if found is None or found[0].is_final:
            for s in sinks:
                if isinstance(s, CheckpointedSink):
                    s.seek(None)
            if self.pager is not None:
                self.pager.reset()
            if self.on_fresh_start is not None:
                self.on_fresh_start()
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
            if not isinstance(src, ResumableSource):
                raise StateError(f"source kind {type(src).__name__} cannot resume from a "
                                 f"position; run with --reset-state to start over")
            src.seek(position)
        for sink, position in zip(sinks, _pad(manifest.sinks, len(sinks)), strict=True):
            if isinstance(sink, CheckpointedSink):
                sink.seek(position)
            else:
                self.log(f"tickflow: sink {type(sink).__name__} keeps no position: it sees "
                         f"only the rows after the resume")
        if self.pager is not None:
            self.pager.restore_from(self.store.dir / f"{manifest.seq:08d}", snapshot.keys)
        else:
            blob_path = self.store.dir / f"{manifest.seq:08d}" / NODES_FILE
            blob = blob_path.read_bytes() if blob_path.is_file() else None
            self.restored_extra = state.scatter(snapshot, blob)
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
        return self._due()

    def advance_all(self, rows: int, positions: list[Any]) -> bool:
        """:meth:`advance` for a graph of several sources: every source's position."""
        self.rows += rows
        self.batches += 1
        self._since += 1
        self.positions = list(positions)
        return self._due()

    def _due(self) -> bool:
        if self.pending is not None:  # the one before is still waiting for its sinks
            return False
        if self.every_batches:
            return self._since >= self.every_batches
        return time.monotonic() - self._last >= self.every_s

    def overdue(self) -> bool:
        """A checkpoint is due and batches have come since the last: also one that came due
        while the one before was pending (``_due`` said no then), which an idle run takes
        now instead of at the next batch, which may not come for a long time."""
        return self._since > 0 and self._due()

    def release(self, sinks: list[Any]) -> None:
        """After the final checkpoint: sinks drop their recovery files."""
        for s in sinks:
            if isinstance(s, ReleasableSink):
                s.release()

    def commit(self, state: Any, sinks: list[Any], is_final: bool = False,
               extra: dict[str, Any] | None = None) -> Manifest:
        """Checkpoint now: sinks commit first, then state and the manifest (the commit point).

        Sink output committed here but not covered by a manifest (a crash in between) is
        discarded by the sinks' ``seek`` on resume. A deferred checkpoint still waiting is
        written first (waiting for its sinks).
        """
        self.settle(sinks, wait=True)
        sink_positions = [s.checkpoint() if isinstance(s, CheckpointedSink) else None
                          for s in sinks]
        blob = None
        if self.pager is None:
            snapshot, blob = _as_state(state).gather(extra)
        else:
            snapshot = StateSnapshot(keys=list(self.pager.keys.values))
        manifest = self._write(snapshot, blob, sink_positions, self._fields(), is_final)
        self._since = 0
        self._last = time.monotonic()
        return manifest

    def _fields(self) -> dict[str, Any]:
        return {"rows": self.rows, "batches": self.batches, "sources": list(self.positions)}

    # a checkpoint begun and not written yet: (token, sinks' marks or positions, the
    # manifest's fields, the snapshot and blob taken when it began)
    pending: tuple[Any, list[Any], dict[str, Any], StateSnapshot, bytes | None] | None = None
    _writing: Any = None  # the pending checkpoint's write on its own thread (a Future)

    def can_defer(self) -> bool:
        """Whether a checkpoint's state can be taken now and written later (a paged state
        lives in the backend and moves on with the run: it is written at once)."""
        return self.pager is None

    def begin(self, state: Any, sinks: list[Any], token: Any = None,
              extra: dict[str, Any] | None = None) -> None:
        """A checkpoint of the state and positions as they are now, written by ``settle``
        once every acknowledged sink (``DeferredCheckpointSink``) has acknowledged what it
        was given up to now, on a thread of its own: the caller waits for neither the broker
        nor the disk (a rocksdb checkpoint took about 1 s on a loaded machine). Other
        checkpointed sinks (files) commit now, as in ``commit``. No other begins while one
        is pending (``_due``)."""
        assert self.pager is None and self.pending is None
        marks = [("mark", s.checkpoint_mark()) if isinstance(s, DeferredCheckpointSink)
                 else s.checkpoint() if isinstance(s, CheckpointedSink) else None
                 for s in sinks]
        snapshot, blob = _as_state(state).gather(extra)
        # copied: the run goes on meanwhile (the blob is bytes already)
        self.pending = (token, marks, self._fields(), snapshot.copy(), blob)
        self._since = 0
        self._last = time.monotonic()

    def settle(self, sinks: list[Any], wait: bool = False) -> list[Any]:
        """Start writing the pending checkpoint once its sinks have acknowledged its outputs;
        returns its token once it is written, else [] (``wait``: flush the sinks and wait
        for the write). A failed write raises here, on the caller's thread."""
        if self.pending is None:
            return []
        token, marks, fields, snapshot, blob = self.pending
        if self._writing is None:
            positions = []
            for s, mark in zip(sinks, marks, strict=True):
                if isinstance(mark, tuple):
                    position = s.checkpoint_at(mark[1])
                    if position is None and wait:
                        s.flush()
                        position = s.checkpoint_at(mark[1])
                    if position is None:
                        return []
                    mark = position
                positions.append(mark)
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(1, thread_name_prefix="tickflow-checkpoint")
            self._writing = pool.submit(self._write, snapshot, blob, positions, fields, False)
            pool.shutdown(wait=False)
        if not wait and not self._writing.done():
            return []
        writing, self._writing, self.pending = self._writing, None, None
        writing.result()
        # the interval counts from the end of this write: a write longer than the interval
        # (rocksdict holds the GIL through its calls) would otherwise start the next at once,
        # and checkpoints would run back to back, stalling the driver all along
        self._last = time.monotonic()
        return [token]

    def _write(self, snapshot: StateSnapshot, blob: bytes | None, sink_positions: list[Any],
               fields: dict[str, Any], is_final: bool) -> Manifest:
        """One checkpoint on disk: the state, then its manifest (the commit point)."""
        manifest = Manifest(seq=self.seq, job_name=self.job.spec.name,
                            spec_sha256=self.spec_hash, layout_sha256=self.layout_hash,
                            backend=self.backend.name, n_keys=snapshot.n_keys,
                            rows=fields["rows"], batches=fields["batches"],
                            sources=fields["sources"], sinks=sink_positions,
                            is_final=is_final, page_keys=self.page_keys)

        # as data, not a closure: the store may commit in its writer process (not a paged
        # job's: its pages are linked from this process)
        files = CommitFiles({NODES_FILE: blob} if blob is not None else {})
        extra: Any = files
        if self.pager is not None:
            pager = self.pager

            def extra(directory: Any) -> None:
                pager.link_into(directory)
                files(directory)

        self.store.commit(self.backend, snapshot, manifest, extra=extra)
        self.seq += 1
        return manifest


def open_checkpointer(job: Any, *, reset: bool = False,
                      log: Callable[[str], None] | None = None) -> Checkpointer | None:
    """A checkpointer for a job whose backend keeps state on disk; None for ``memory``."""
    backend = get_backend(job.spec.state.backend)
    if not backend.is_persistent:
        return None
    if log is None and job.context.quiet:
        log = _quiet
    return Checkpointer(job, reset=reset, log=log)


def _quiet(message: str) -> None:
    return None


def with_positions(source: Any, batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    """Pair each batch with the source position just after it (asked right after the yield)."""
    if not isinstance(source, ResumableSource):
        for batch in batches:
            yield batch, None
        return
    for batch in batches:
        yield batch, source.position()


def _pad(values: list[Any], n: int) -> list[Any]:
    return (list(values) + [None] * n)[:n]
