"""A kernel bound to its parameters and columns, run over arrays with its per-key state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tickflow.engine.state.arrays import KernelState
from tickflow.engine.state.tiers import Tier
from tickflow.kernels.base import KernelDef, Params


@dataclass
class BoundKernel:
    """One compiled kernel step: definition, validated params, column names and numeric args."""

    step_id: str
    definition: KernelDef
    params: Params
    input_columns: tuple[str, ...]
    output_columns: tuple[str, ...]

    has_kernel_state: ClassVar[bool] = True  # per-key state arrays (checkpointed, paged)

    def __post_init__(self) -> None:
        self.args: tuple[Any, ...] = tuple(self.definition.args(self.params))

    @property
    def is_cross_key(self) -> bool:
        """Whether the kernel reads several keys' rows (``extra={"cross_key": params}``)."""
        return "cross_key" in self.definition.extra

    @property
    def key_values(self) -> tuple[Any, ...]:
        """The key values (symbols) a cross-key kernel names in its params, e.g. ``a``, ``b``."""
        return tuple(getattr(self.params, p) for p in self.definition.extra.get("cross_key", ()))

    def new_state(self) -> KernelState:
        return KernelState(self.definition.state(self.params), tiered=not self.is_cross_key)

    def run(self, key: np.ndarray, ts: np.ndarray, inputs: list[np.ndarray],
            state: KernelState, key_ids: tuple[int, ...] = (),
            n_keys: int | None = None) -> list[np.ndarray]:
        """Run over one chunk of rows; returns the output columns. State carries forward.

        A cross-key kernel gets the ids of its ``key_values`` in ``key_ids`` (-1 for a key not
        seen yet) right after its outputs, and ``key`` holds global key ids; its state has a
        single row (index 0) that belongs to the whole group of keys.

        Keys whose per-row buffers live in a wider tier (engine/state/arrays.py) run as
        separate passes over their rows with tier-local ids; with one tier in use the chunk
        runs in one pass, as it is. ``n_keys`` (``key.max() + 1``) may be given by a caller
        that runs many steps over the same ``key`` (a lane: computed once, not once a step).
        """
        n = key.shape[0]
        outs = [np.empty(n, dtype=dt) for dt in self.definition.output_dtypes]
        if n == 0:
            return outs
        if self.is_cross_key:
            n_keys = 1
        elif n_keys is None:
            n_keys = int(key.max()) + 1
        state.ensure_keys(n_keys)
        state.reserve(key)
        # one array type for every call: numba compiles read-only (Arrow zero-copy) and
        # writable arrays separately, and the two builds may round differently in the last bit
        ts = _writable(ts)
        inputs = [_writable(x) for x in inputs]
        for tier, idx, local in state.route(_writable(key)):
            if idx is None:
                self._run(local, ts, inputs, state, tier, outs, key_ids)
                continue
            part = [np.empty(idx.size, dtype=dt) for dt in self.definition.output_dtypes]
            self._run(local, ts[idx], [x[idx] for x in inputs], state, tier, part, key_ids)
            for out, values in zip(outs, part, strict=True):
                out[idx] = values
        return outs

    def _run(self, key: np.ndarray, ts: np.ndarray, inputs: list[np.ndarray],
             state: KernelState, tier: Tier, outs: list[np.ndarray],
             key_ids: tuple[int, ...]) -> None:
        """The kernel over rows whose keys all live in ``tier`` (their tier-local ids)."""
        fn = self.definition.fn
        n = key.shape[0]
        start = 0
        while True:
            arrays = state.ordered(tier)
            if start == 0:
                done = fn(key, ts, *inputs, *arrays, *outs, *key_ids, *self.args)
            else:
                done = start + fn(key[start:], ts[start:], *[x[start:] for x in inputs],
                                  *arrays, *[o[start:] for o in outs], *key_ids, *self.args)
            if done >= n:
                return
            if not state.grow_buffers(tier):
                raise RuntimeError(f"step '{self.step_id}' stopped at a full buffer that "
                                   f"cannot grow")
            start = done

def _writable(x: np.ndarray) -> np.ndarray:
    if x.flags.writeable and x.flags.c_contiguous:
        return x
    return np.array(x, copy=True, order="C")
