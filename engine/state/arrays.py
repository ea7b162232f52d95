"""State arrays for one kernel step: one array per declared field, first axis = key id."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tickflow.kernels.base import Field

PER_ROW_START = 8
"""First width of a per-row buffer (``Field.per_row``); it doubles, up to the window, as the
keys' row counts need."""


class KernelState:
    """Holds a step's per-key state arrays and grows them as keys and time windows grow.

    The kernel only sees the arrays; whether they came from memory, RocksDB or TileDB is the
    backend's business (it reads and writes ``snapshot``/``restore``).

    Per-row buffers (row windows, ``Field.per_row``) start ``PER_ROW_START`` wide rather than
    a whole window for every key: before each chunk, :meth:`reserve` widens them to the most
    values a key could hold after it (its ``{group}_count`` plus its rows in the chunk). At
    100,000 keys of a few dozen ticks each, a 100-row window then costs a third of its size.
    A kernel sees the same values in the same order at any width, so outputs do not change.
    """

    def __init__(self, fields: list[Field], n_keys: int = 0):
        self.fields = fields
        self.per_row = [f for f in fields if f.per_row]
        self._per_row_counts = sorted({f"{f.group}_count" for f in self.per_row})
        self._per_row_full = max((f.shape[-1] for f in self.per_row), default=0)
        self.width = min(PER_ROW_START, self._per_row_full)
        self.arrays: dict[str, np.ndarray] = {
            f.name: self._new(f, max(n_keys, 8), self._shape(f)) for f in fields}
        self.n_keys = 0

    @staticmethod
    def _new(f: Field, n: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.full((n, *shape), f.fill, dtype=f.dtype)

    def _shape(self, f: Field) -> tuple[int, ...]:
        if not f.per_row:
            return f.shape
        return (*f.shape[:-1], min(f.shape[-1], self.width))

    @property
    def capacity(self) -> int:
        if not self.fields:
            return 1 << 62
        return next(iter(self.arrays.values())).shape[0]

    def ensure_keys(self, n_keys: int) -> None:
        """Make room for key ids < n_keys; new keys start from each field's fill value.

        The key axis grows by a quarter (not double) past 4096 keys: at 100,000 keys at most
        a fifth of the state is unused rather than half.
        """
        if n_keys <= self.capacity:
            self.n_keys = max(self.n_keys, n_keys)
            return
        cap = self.capacity
        new_cap = max(n_keys, cap + (cap if cap < 4096 else cap // 4))
        for f in self.fields:
            old = self.arrays[f.name]
            arr = self._new(f, new_cap, old.shape[1:])
            arr[: old.shape[0]] = old
            self.arrays[f.name] = arr
        self.n_keys = n_keys

    def reserve(self, key: np.ndarray) -> None:
        """Widen per-row buffers so that the rows of ``key`` (this chunk) cannot fill them."""
        if self.width >= self._per_row_full or key.size == 0:
            return
        rows = np.bincount(key)
        need = 0
        for name in self._per_row_counts:
            count = self.arrays[name]
            m = min(len(rows), len(count))
            need = max(need, int((count[:m] + rows[:m]).max()))
        if need > self.width:
            self._widen(need)

    def _widen(self, need: int) -> None:
        """Re-lay every per-row buffer at a width >= need (a power of two, or the window)."""
        width = self.width
        while width < need and width < self._per_row_full:
            width *= 2
        self.width = min(width, self._per_row_full)
        self._resize([f for f in self.per_row
                      if self.arrays[f.name].shape[-1] < self._shape(f)[-1]],
                     lambda f: self._shape(f)[-1])

    def _resize(self, fields: list[Field], width: Callable[[Field], int]) -> None:
        """Give ``fields`` their new last-axis width; rings are re-laid so their head is 0."""
        groups = {f.group for f in fields if f.grow == "ring"}
        for f in fields:
            old = self.arrays[f.name]
            cap = old.shape[-1]
            new = width(f)
            arr = np.full((*old.shape[:-1], new), f.fill, dtype=f.dtype)
            if f.grow == "ring":
                head = self.arrays[f"{f.group}_head"]
                idx = (head[:, None] + np.arange(cap)[None, :]) % cap
                arr[..., :cap] = np.take_along_axis(old, idx, axis=-1)
            else:
                arr[..., :cap] = old
            self.arrays[f.name] = arr
        for g in groups:
            self.arrays[f"{g}_head"][:] = 0

    def grow_buffers(self) -> None:
        """Double every growable buffer (a time window filled up); per-row ones stop at
        their window. Rings are re-laid so that their head is 0."""
        if self.per_row and self.width < self._per_row_full:
            self._widen(2 * self.width)
        self._resize([f for f in self.fields if f.grow is not None and not f.per_row],
                     lambda f: 2 * self.arrays[f.name].shape[-1])

    def widths(self) -> dict[str, int]:
        """The last-axis width of every growable buffer (lanes match them before stacking)."""
        return {f.name: self.arrays[f.name].shape[-1] for f in self.fields
                if f.grow is not None}

    def grow_to(self, widths: dict[str, int]) -> None:
        """Grow until every growable buffer is at least as wide as in ``widths``."""
        per_row = max((widths[f.name] for f in self.per_row), default=0)
        if per_row > self.width:
            self._widen(per_row)
        others = [f for f in self.fields if f.grow is not None and not f.per_row]
        while any(self.arrays[f.name].shape[-1] < widths[f.name] for f in others):
            self._resize(others, lambda f: 2 * self.arrays[f.name].shape[-1])

    def ordered(self) -> list[np.ndarray]:
        return [self.arrays[f.name] for f in self.fields]

    # ------------------------------------------------------------------ save / restore

    def snapshot(self, key_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the given keys' state, field by field (what a backend stores)."""
        return {f.name: self.arrays[f.name][key_ids].copy() for f in self.fields}

    def restore(self, key_ids: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Load saved state for the given keys; buffers are resized to the current capacity.

        Saved rings are first re-laid from their head so a capacity change keeps their order.
        """
        if len(key_ids):
            self.ensure_keys(int(key_ids.max()) + 1)
        values = dict(values)
        self.grow_to({f.name: values[f.name].shape[-1] for f in self.fields
                      if f.grow is not None})
        relaid: set[str] = set()
        for f in self.fields:
            if f.grow is None:
                continue
            saved = values[f.name]
            cap = self.arrays[f.name].shape[-1]
            if saved.shape[-1] == cap:
                continue
            if f.grow == "ring":
                old_cap = saved.shape[-1]
                head = values[f"{f.group}_head"]
                idx = (head[:, None] + np.arange(old_cap)[None, :]) % old_cap
                saved = np.take_along_axis(saved, idx, axis=-1)
                relaid.add(f.group)
            padded = np.full((saved.shape[0], *self.arrays[f.name].shape[1:]), f.fill,
                             dtype=f.dtype)
            padded[..., : saved.shape[-1]] = saved
            values[f.name] = padded
        for g in relaid:
            values[f"{g}_head"] = np.zeros_like(values[f"{g}_head"])
        for f in self.fields:
            self.arrays[f.name][key_ids] = values[f.name]
