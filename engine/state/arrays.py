"""State arrays for one kernel step: one array per declared field, first axis = key id."""

from __future__ import annotations

import numpy as np

from tickflow.kernels.base import Field


class KernelState:
    """Holds a step's per-key state arrays and grows them as keys and time windows grow.

    The kernel only sees the arrays; whether they came from memory, RocksDB or TileDB is the
    backend's business (it reads and writes ``snapshot``/``restore``).
    """

    def __init__(self, fields: list[Field], n_keys: int = 0):
        self.fields = fields
        self.arrays: dict[str, np.ndarray] = {
            f.name: self._new(f, max(n_keys, 8), f.shape) for f in fields}
        self.n_keys = 0

    @staticmethod
    def _new(f: Field, n: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.full((n, *shape), f.fill, dtype=f.dtype)

    @property
    def capacity(self) -> int:
        if not self.fields:
            return 1 << 62
        return next(iter(self.arrays.values())).shape[0]

    def ensure_keys(self, n_keys: int) -> None:
        """Make room for key ids < n_keys; new keys start from each field's fill value."""
        if n_keys <= self.capacity:
            self.n_keys = max(self.n_keys, n_keys)
            return
        new_cap = max(n_keys, 2 * self.capacity)
        for f in self.fields:
            old = self.arrays[f.name]
            arr = self._new(f, new_cap, old.shape[1:])
            arr[: old.shape[0]] = old
            self.arrays[f.name] = arr
        self.n_keys = n_keys

    def grow_buffers(self) -> None:
        """Double every growable buffer; rings are re-laid so that their head is 0."""
        groups = {f.group for f in self.fields if f.grow == "ring"}
        for f in self.fields:
            if f.grow is None:
                continue
            old = self.arrays[f.name]
            cap = old.shape[-1]
            arr = np.full((*old.shape[:-1], 2 * cap), f.fill, dtype=f.dtype)
            if f.grow == "ring":
                head = self.arrays[f"{f.group}_head"]
                idx = (head[:, None] + np.arange(cap)[None, :]) % cap
                arr[..., :cap] = np.take_along_axis(old, idx, axis=-1)
            else:
                arr[..., :cap] = old
            self.arrays[f.name] = arr
        for g in groups:
            self.arrays[f"{g}_head"][:] = 0

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
        relaid: set[str] = set()
        for f in self.fields:
            if f.grow is None:
                continue
            saved = values[f.name]
            while saved.shape[-1] > self.arrays[f.name].shape[-1]:
                self.grow_buffers()
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
