"""One width tier of a step's state: every field's array for some keys, at one per-row width.

:class:`~tickflow.engine.state.arrays.KernelState` keeps a tier for most keys (tier 0, indexed
by key id) and side tiers, wider, for the few keys whose rows need more room; a kernel runs on
one tier's arrays at a time with tier-local key ids. Moving a key between tiers (or saving
state from tiers of different widths) re-lays its rings from their heads with :func:`fit`.
"""

from __future__ import annotations

import itertools
import mmap
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from tickflow.kernels.base import Field


def grown(cap: int, n: int, row_bytes: int = 0) -> int:
    """The key-axis capacity after growing from ``cap`` to hold ``n`` rows: it doubles, or
    grows eightfold when every field is mapped at that size (its smallest rows are
    ``row_bytes``). Rows past those in use are never written (see :class:`Tier`), so the
    room costs no memory in a mapped array (in one from malloc's heap it may), and each
    growth copies every row into pages touched for the first time: at 100,000 keys doubling
    faulted in about as much memory again as the state holds (faults cost about 1 ms a MB
    on this machine)."""
    factor = 8 if row_bytes * 8 * cap >= MAP_BYTES else 2
    return max(n, factor * cap)


def relaid(values: dict[str, np.ndarray], f: Field) -> np.ndarray:
    """A ring field's rows re-laid so that each key's oldest value is at index 0."""
    arr = values[f.name]
    cap = arr.shape[-1]
    head = values[f"{f.group}_head"]
    idx = (head[:, None] + np.arange(cap)[None, :]) % cap
    return np.take_along_axis(arr, idx, axis=-1)


def fit(fields: Iterable[Field], values: dict[str, np.ndarray],
        widths: dict[str, int]) -> dict[str, np.ndarray]:
    """``values`` (rows of saved state) with every growable field at the width in ``widths``.

    Rings are re-laid from their heads first (the heads become 0), then padded with the fill
    value or cut: a per-row buffer may be cut to any width not below its keys' counts.
    """
    out = dict(values)
    relaid_groups: set[str] = set()
    for f in fields:
        if f.grow is None or f.name not in widths:
            continue
        saved = values[f.name]
        new = widths[f.name]
        if saved.shape[-1] == new:
            continue
        if f.grow == "ring" and values[f"{f.group}_head"].any():
            # (a row window's ring below its full width never wraps: its heads are all 0)
            saved = relaid(values, f)
            relaid_groups.add(f.group)
        arr = np.full((*saved.shape[:-1], new), f.fill, dtype=f.dtype)
        keep = min(new, saved.shape[-1])
        arr[..., :keep] = saved[..., :keep]
        out[f.name] = arr
    for g in relaid_groups:
        out[f"{g}_head"] = np.zeros_like(values[f"{g}_head"])
    return out


class Tier:
    """Arrays of every field for ``capacity`` rows; per-row buffers ``width`` wide.

    Rows past ``filled`` hold nothing yet: they get their fill values when first needed, so
    that a large array's unused rows (room to grow) are never written and cost no memory.
    A side tier also records which lane key id each of its rows holds (``keys``) and how many
    of its rows are live (a key that moved on leaves a dead row behind).
    """

    def __init__(self, fields: list[Field], width: int, n: int = 8, side: bool = False):
        self.fields = fields
        self.width = width
        self.side = side
        # a side tier's arrays are mapped whatever their size: grown in place, they leave no
        # holes in glibc's heap (19 MB of small arrays there at 100,000 keys, freed as they grew)
        self.arrays = {f.name: blank((n, *self.shape(f)), f.dtype, self._reserve, side)
                       for f in fields}
        self.keys = zeros(n, np.int64, mapped=True) if side else np.zeros(0, dtype=np.int64)
        self.filled = 0
        self.size = 0  # rows handed out (side tiers)
        self.live = 0  # rows still holding a key (side tiers)
        self.free = np.zeros(0, dtype=np.int64)  # dead rows given out again first (side tiers)
        self.ensure_rows(n)

    def shape(self, f: Field) -> tuple[int, ...]:
        if not f.per_row:
            return f.shape
        return (*f.shape[:-1], min(f.shape[-1], self.width))

    @property
    def _reserve(self) -> int:
        return RESERVE_BYTES if self.side else 0

    @property
    def capacity(self) -> int:
        return next(iter(self.arrays.values())).shape[0] if self.arrays else 0

    def ensure_rows(self, n: int, fill: bool = True) -> None:
        """Room for rows < n (new rows start from each field's fill value, or hold anything
        when ``fill`` is False: the caller writes them whole)."""
        cap, done = self.capacity, self.filled
        if n > cap:
            new_cap = grown(cap, n, min((a.nbytes // max(cap, 1) for a in self.arrays.values()
                                         if a.nbytes), default=0))
            for f in self.fields:
                old = self.arrays[f.name]
                shape = (new_cap, *old.shape[1:])
                arr = regrow(old, shape)  # in its own map's room: the rows stay where they are
                if arr is None:
                    arr = blank(shape, f.dtype, RESERVE_BYTES, self.side)
                    arr[:done] = old[:done]
                self.arrays[f.name] = arr
            if self.side:
                self.keys = zeros(new_cap, np.int64, self.keys, mapped=True)
        if n > done:
            for f in self.fields if fill else ():
                self.arrays[f.name][done:n] = f.fill
            self.filled = n

    def widths(self) -> dict[str, int]:
        return {f.name: self.arrays[f.name].shape[-1] for f in self.fields
                if f.grow is not None}

    def widen(self, width: int) -> None:
        """Re-lay every per-row buffer at ``width`` (never past its window)."""
        self.width = width
        self.resize([f for f in self.fields if f.per_row
                     and self.arrays[f.name].shape[-1] < self.shape(f)[-1]],
                    lambda f: self.shape(f)[-1])

    def resize(self, fields: list[Field], width) -> None:
        """Give ``fields`` their new last-axis width; rings are re-laid so their head is 0.

        Rows are re-laid a block at a time: the temporaries stay small.
        """
        if not fields:
            return
        widths = {f.name: width(f) for f in fields}
        cap, n = self.capacity, self.filled
        new, moved = {}, False
        for f in fields:
            old = self.arrays[f.name]
            shape = (cap, *old.shape[1:-1], widths[f.name])
            arr = regrow(old, shape) if widths[f.name] >= old.shape[-1] else None
            moved |= arr is not None
            new[f.name] = arr if arr is not None else blank(shape, f.dtype, RESERVE_BYTES,
                                                            self.side)
        # Widened in place, a row's new place overlaps the old places of the rows after it
        # (never before it): blocks go last to first, each copied out (fit) before written.
        blocks = range(0, n, RELAY_ROWS)
        for lo in reversed(blocks) if moved else blocks:
            hi = min(n, lo + RELAY_ROWS)
            part = fit(fields, {k: a[lo:hi] for k, a in self.arrays.items()}, widths)
            for f in fields:  # (fit gave new arrays: every field here changes width)
                new[f.name][lo:hi] = part[f.name]
        for g in {f.group for f in fields if f.grow == "ring"
                  and self.arrays[f.name].shape[-1] != widths[f.name]}:
            self.arrays[f"{g}_head"][:n] = 0
        self.arrays.update(new)

    def grow_time(self) -> None:
        """Double every growable buffer that is not per-row (a time window filled up)."""
        self.resize([f for f in self.fields if f.grow is not None and not f.per_row],
                    lambda f: 2 * self.arrays[f.name].shape[-1])

    def grow_to(self, widths: dict[str, int], full: int) -> None:
        """Grow until every growable buffer is at least as wide as in ``widths``."""
        per_row = max((widths[f.name] for f in self.fields if f.per_row and f.name in widths),
                      default=0)
        if per_row > self.width:
            width = self.width
            while width < per_row and width < full:
                width *= 2
            self.widen(min(width, full))
        others = [f for f in self.fields if f.grow is not None and not f.per_row]
        while any(self.arrays[f.name].shape[-1] < widths.get(f.name, 0) for f in others):
            self.grow_time()

    def rows(self, fields: list[Field], local: np.ndarray) -> dict[str, np.ndarray]:
        return {f.name: self.arrays[f.name][local] for f in fields}

    def put(self, fields: list[Field], local: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Write saved rows (any widths) at ``local``; time buffers grow to hold them first."""
        self.grow_to({f.name: values[f.name].shape[-1] for f in fields if f.grow is not None
                      and not f.per_row}, 0)
        values = fit(fields, values, self.widths())
        for f in fields:
            self.arrays[f.name][local] = values[f.name]

    def append(self, fields: list[Field], keys: np.ndarray,
               values: dict[str, np.ndarray]) -> np.ndarray:
        """Give ``keys`` rows holding ``values``, dead ones first; returns their tier-local
        ids. (Keys pass through a side tier as their counts grow: without reuse, the tier of
        width 16 took a row for most of 100,000 keys, each faulted in for the first time.)"""
        if self.free.size:  # in order: rows written in the order of their keys
            self.free.sort()
        reused, self.free = self.free[:keys.size], self.free[keys.size:]
        fresh = keys.size - reused.size
        local = np.concatenate([reused, np.arange(self.size, self.size + fresh, dtype=np.int64)])
        self.ensure_rows(self.size + fresh, fill=False)  # new rows are written whole just below
        self.size += fresh
        self.live += keys.size
        self.keys[local] = keys
        self.put(fields, local, values)
        return local

    def release(self, local: np.ndarray) -> None:
        """Rows whose keys moved to another tier: dead, given out again by :meth:`append`."""
        self.live -= local.size
        self.free = np.concatenate([self.free, local])

    def nbytes(self) -> int:
        """Bytes of the rows in use (rows past ``filled`` of a mapped array are not resident)."""
        return self.field_bytes_sum() + self.keys[:self.size].nbytes

    def field_bytes(self, name: str) -> int:
        a = self.arrays[name]
        return a.nbytes * self.filled // max(a.shape[0], 1)

    def field_bytes_sum(self) -> int:
        return sum(self.field_bytes(name) for name in self.arrays)


MAP_BYTES = 1 << 20
"""State arrays this large get their own anonymous memory map (see :func:`blank`)."""


RELAY_ROWS = 8192
"""Rows re-laid at a time when a tier's buffers change width."""


RESERVE_FACTOR = 256
"""A tier's mapped array reserves this many times its size in address space (at most
``RESERVE_BYTES``), to grow and widen in place (:func:`blank`): at 100,000 keys a 100-row
window's arrays are first mapped at 1-6 MB and end at 25-80 MB. Past that, growth copies into
a new map, as before."""
RESERVE_BYTES = 1 << 34

_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
_SPREAD = itertools.cycle(range(509))
"""Extra pages for each reserved map, so that arrays do not start a multiple of 2^n bytes apart:
aligned alike, the rows of one key in several fields fall in the same cache sets, and the
research job's kernels took 2.5x as long at 100,000 keys."""


def blank(shape: tuple[int, ...], dtype: Any, reserve: int = 0,
          mapped: bool = False) -> np.ndarray:
    """An uninitialised array; large ones are mapped on their own rather than taken from malloc.

    Once the process has freed a large block, glibc serves blocks up to 32 MB from its heap,
    where a state array freed by growth leaves a hole that stays resident (a quarter of the
    state at 100,000 keys). A map goes back to the system when the array is freed, and its
    pages cost nothing until written.

    The map spans ``reserve`` bytes when that is more (address space only: never committed
    nor touched), so that the array can grow and widen in place (:func:`regrow`). A new
    array's pages are each faulted in on first touch (about 1 ms a MB here): at 100,000 keys,
    copying state into new arrays as it grew faulted in about its own size again.

    ``mapped`` maps the array whatever its size (not an empty one): a side tier's.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size == 0 or (size < MAP_BYTES and not mapped):
        return np.empty(shape, dtype=dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS  # a shared map is shmem: faults cost 2x more
    buffer = None
    reserve = min(reserve, RESERVE_FACTOR * size)
    if reserve > size and _NORESERVE:
        try:
            buffer = mmap.mmap(-1, reserve + next(_SPREAD) * mmap.PAGESIZE,
                               flags=flags | _NORESERVE)
        except OSError:  # (a limit on address space: map only what is asked)
            buffer = None
    if buffer is None:
        try:
            buffer = mmap.mmap(-1, size, flags=flags)
        except OSError as exc:  # as numpy says it: the command line names the step
            raise MemoryError(f"Unable to allocate {size / (1 << 30):.2f} GiB for an array "
                              f"with shape {shape} and data type {dtype}") from exc
    return np.frombuffer(buffer, dtype=dtype, count=size // dtype.itemsize).reshape(shape)


def zeros(n: int, dtype: Any, old: np.ndarray | None = None,
          mapped: bool = False) -> np.ndarray:
    """A zeroed array of ``n`` values beginning with ``old``'s (``old`` itself when it holds
    ``n``): a map from :func:`blank` once large, grown in place where its room allows.

    A fresh map reads as zeros and costs nothing until written, so a key-axis map (which key
    lives in which tier) costs the keys in use, not the tier's capacity: from glibc's heap,
    ``np.zeros`` wrote its whole length (48 MB for the research job's 14 tiered steps at
    100,000 keys, against 12 MB in use), and each growth copied it.
    """
    if old is not None and old.shape[0] >= n:
        return old
    dtype = np.dtype(dtype)
    arr = regrow(old, (n,)) if old is not None and old.size else None
    if arr is not None:  # (the map's room past ``old`` was never written: zeros)
        return arr
    if n == 0 or (n * dtype.itemsize < MAP_BYTES and not mapped):
        arr = np.zeros(n, dtype=dtype)
    else:
        arr = blank((n,), dtype, RESERVE_BYTES, mapped)  # (a fresh map: zeros)
    if old is not None:
        arr[:old.shape[0]] = old
    return arr


def regrow(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``arr``'s own map seen as an array of ``shape`` from its start, when ``arr`` is a map's
    whole array from :func:`blank` and the map holds ``shape``; else None.

    The bytes do not move: rows keep their place when the key axis grows, and a caller that
    widens the rows moves them itself (:meth:`Tier.resize`).
    """
    buffer = arr.base
    while isinstance(buffer, np.ndarray):
        buffer = buffer.base
    if isinstance(buffer, memoryview):
        buffer = buffer.obj
    if not isinstance(buffer, mmap.mmap):
        return None
    size = int(np.prod(shape, dtype=np.int64)) * arr.itemsize
    if len(buffer) < size or not arr.flags.c_contiguous:
        return None
    new = np.frombuffer(buffer, dtype=arr.dtype, count=size // arr.itemsize).reshape(shape)
    return new if new.ctypes.data == arr.ctypes.data else None
