"""The one interface behind which kernel state is saved: kernels never see it.

While batches run, every step's per-key state lives in numpy arrays (``KernelState``). At a
checkpoint the engine gathers them into a :class:`StateSnapshot` (one array per field, first
axis = global key id) and hands it to the job's backend, which writes it under the checkpoint's
directory in its own format; a restart reads it back. Backends differ only in storage:

- ``memory`` keeps nothing on disk (a restart starts from empty state);
- ``rocksdb`` keeps one value per (step, block of key ids): a column family per step;
- ``tiledb`` keeps one dense array per step, one attribute per field, indexed by key id.

A backend may also read a subset of keys (``key_ids``), which is what ``run-job state`` and
shard paging use. A step's keys of wider width tiers are saved apart, as the step
``<step>@w<width>`` (:func:`side_step_id`): a backend stores it like any other step.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tickflow.engine.errors import StateError
from tickflow.engine.file_identity import Identity, sha256_held_still
from tickflow.engine.registry import STATE_BACKENDS


@dataclass(frozen=True)
class FieldLayout:
    """One state field as stored: name, numpy dtype string and per-key shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def to_json(self) -> list[Any]:
        return [self.name, self.dtype, list(self.shape)]

    @classmethod
    def from_json(cls, value: list[Any]) -> FieldLayout:
        return cls(str(value[0]), str(value[1]), tuple(int(x) for x in value[2]))


StepLayout = list[FieldLayout]
"""The fields of one step, in the kernel's declared order."""


@dataclass
class StateSnapshot:
    """Every step's state by global key id, plus the key values.

    ``steps[step_id][field]`` has shape ``(rows, *field_shape)``: ``rows`` is ``n_keys`` for a
    per-key step and 1 for a cross-key step (one state for its whole group of keys).
    """

    keys: list[Any]
    steps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def n_keys(self) -> int:
        return len(self.keys)

    def layout(self) -> dict[str, StepLayout]:
        return {sid: [FieldLayout(name, arr.dtype.str, tuple(arr.shape[1:]))
                      for name, arr in fields.items()]
                for sid, fields in self.steps.items()}

    def rows(self) -> dict[str, int]:
        return {sid: (len(next(iter(fields.values()))) if fields else self.n_keys)
                for sid, fields in self.steps.items()}

    def nbytes(self) -> int:
        return sum(a.nbytes for f in self.steps.values() for a in f.values())

    def copy(self) -> StateSnapshot:
        """A snapshot of its own: ``gather`` gives views of the live state, which the next
        batch changes (a checkpoint written later must hold the state as it was)."""
        return StateSnapshot(keys=list(self.keys),
                             steps={sid: {name: arr.copy() for name, arr in fields.items()}
                                    for sid, fields in self.steps.items()})


SIDE_MARK = "@w"
"""Separates a step id from a width in the id of a step's side rows (step ids have no ``@``)."""

TIER_KEY = "tier_key"
"""The field of side rows that holds each row's key id."""


def side_step_id(step_id: str, width: int) -> str:
    """Where a step's keys of one wider tier are saved: ``<step>@w<width>``.

    Most keys of a step are saved in the step's own rows, at tier 0's width; the few whose
    per-row buffers need more room are saved apart, at their own width, with their key ids in
    :data:`TIER_KEY` (their rows in the step's own arrays hold fresh state). So a checkpoint
    costs what the state costs in RAM, not every key at the widest key's width.
    """
    return f"{step_id}{SIDE_MARK}{width}"


def side_of(name: str) -> str | None:
    """The step whose side rows ``name`` holds (None for a step's own rows)."""
    step, mark, width = name.rpartition(SIDE_MARK)
    return step if mark and width.isdigit() else None


def with_side_rows(steps: dict[str, dict[str, np.ndarray]],
                   side: dict[str, dict[str, np.ndarray]],
                   key_ids: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """``steps`` (rows of ``key_ids``) with the rows of keys saved apart (``side``) put in."""
    for name, fields in side.items():
        step = side_of(name)
        if step not in steps or not fields:
            continue
        stored = fields[TIER_KEY]
        pos = np.minimum(np.searchsorted(stored, key_ids), max(stored.size - 1, 0))
        hit = stored[pos] == key_ids if stored.size else np.zeros(key_ids.size, bool)
        if not hit.any():
            continue
        rows = {k: v[pos] for k, v in fields.items() if k != TIER_KEY}
        if hit.all():
            steps[step] = rows
            continue
        for k, v in rows.items():
            if steps[step][k].shape[1:] != v.shape[1:]:
                raise StateError(f"step '{step}': the keys asked for are saved at different "
                                 f"widths; read them one at a time")
            steps[step][k][hit] = v[hit]
    return steps


def read_keys_state(backend: StateBackend, path: Path, layout: dict[str, StepLayout],
                    rows: dict[str, int], n_keys: int,
                    key_ids: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The per-key steps' state of some keys, wherever each key's rows were saved."""
    side = {sid: f for sid, f in layout.items() if side_of(sid) is not None}
    own = {sid: f for sid, f in layout.items() if sid not in side and rows.get(sid) == n_keys}
    steps = backend.read(path, own, rows, key_ids)
    if side:  # a few keys saved apart at a wider width (read whole: they are few)
        steps = with_side_rows(steps, backend.read(path, side, rows), np.asarray(key_ids))
    return steps


def layout_to_json(layout: dict[str, StepLayout]) -> dict[str, list[list[Any]]]:
    return {sid: [f.to_json() for f in fields] for sid, fields in layout.items()}


def layout_from_json(value: dict[str, list[list[Any]]]) -> dict[str, StepLayout]:
    return {sid: [FieldLayout.from_json(f) for f in fields] for sid, fields in value.items()}


def record_dtype(fields: StepLayout) -> np.dtype:
    """A packed structured dtype holding one key's whole step state (rocksdb values)."""
    return np.dtype([(f.name, np.dtype(f.dtype), f.shape) for f in fields])


class StateBackend:
    """Writes and reads a :class:`StateSnapshot` under a checkpoint directory.

    Args:
        options: backend settings from the job (reserved; none are needed today).

    Subclasses set ``is_persistent`` to False when nothing reaches disk; the engine then takes
    no checkpoints at all.
    """

    name: ClassVar[str] = ""
    is_persistent: ClassVar[bool] = True

    def __init__(self, **options: Any):
        self.options = options

    def write(self, directory: Path, snapshot: StateSnapshot) -> None:
        """Store every step's arrays under ``directory`` (created by the caller, empty)."""
        raise NotImplementedError

    def write_hashed(self, directory: Path, snapshot: StateSnapshot) -> FileDigests | None:
        """:meth:`write` for a checkpoint, whose manifest holds every file's sha256: a backend
        may return the digests of files it hashed as it went (:class:`BackgroundDigests`),
        which the manifest takes for files still of the identity recorded. (Shard pages
        are written by ``write``: nothing hashes them then.)"""
        self.write(directory, snapshot)
        return None

    def read(self, directory: Path, layout: dict[str, StepLayout], rows: dict[str, int],
             key_ids: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
        """The steps in ``layout``: all rows (``key_ids=None``) or the given ids, in order.

        ``rows[step_id]`` is the number of rows the step was written with.

        Raises:
            StateError: the stored state is missing, unreadable or does not match ``layout``.
        """
        raise NotImplementedError


FileDigests = dict[str, tuple[Identity, str]]
"""Path relative to the checkpoint directory -> (identity when hashed, sha256)."""


def _hash_still(path: Path) -> tuple[Identity, str] | None:
    """The file's sha256 with its identity, when the identity held while it was read."""
    try:
        with path.open("rb") as fh:
            digest, held = sha256_held_still(fh)
    except OSError:
        return None  # the manifest hashes it (or finds it gone)
    return (held, digest) if held is not None else None


class BackgroundDigests:
    """The sha256 of files a backend has finished, taken on a thread while it writes the next.

    Why: the manifest hashes every file of a checkpoint after the backend is done. RocksDB's
    SST writer drops what it writes from the page cache, so that hash read 527 MB back from
    disk (0.4-0.5 s at 100K keys) after the write; hashed here, it overlaps the writing of
    the following steps (sha256 and file reads let go of the GIL).
    """

    def __init__(self, directory: Path):
        from concurrent.futures import ThreadPoolExecutor

        self.directory = directory
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tickflow-state-sha256")
        self._futures: dict[str, Any] = {}

    def add(self, path: Path) -> None:
        """Hash ``path`` (under ``directory``, finished: not written to again)."""
        self._futures[str(path.relative_to(self.directory))] = self._pool.submit(
            _hash_still, path)

    def close(self) -> FileDigests:
        """Every digest taken (waits for them)."""
        try:
            done = {rel: f.result() for rel, f in self._futures.items()}
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return {rel: r for rel, r in done.items() if r is not None}


def backend_names() -> list[str]:
    return STATE_BACKENDS.names()


def get_backend(name: str, **options: Any) -> StateBackend:
    """An instance of the backend registered as ``name`` (dotted paths import on first use)."""
    obj = STATE_BACKENDS.get(name)
    if isinstance(obj, str):
        module, _, attr = obj.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise StateError(f"state backend {name!r} needs a package that is not installed: "
                             f"{exc}") from None
    return obj(**options)


def check_ids(key_ids: Iterable[int] | np.ndarray | None, rows: int,
              step_id: str = "") -> np.ndarray | None:
    """Validate requested key ids against a step's stored row count."""
    if key_ids is None:
        return None
    ids = np.asarray(key_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= rows):
        raise StateError(f"key id out of range: step '{step_id}' holds {rows} rows")
    return ids
