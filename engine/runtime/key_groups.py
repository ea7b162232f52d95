"""A morsel's rows grouped by key before the kernel passes, and the outputs put back in order.

Grouped, a key's rows are consecutive (in arrival order), so a kernel keeps the key's state in
locals across them (kernels.averages.rolling_moments does) and walks the state arrays in key
order instead of at random. Measured with ``bench/fusion.py`` on the research job's 34 kernel
steps, one lane (docs/performance.md): about 8% less time at 14 keys and a third less at
100,000 keys, the sort, the gather of the inputs and the scatter of the outputs included.
Outputs do not change: each key's rows meet the same kernels in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

GROUP_MIN_ROWS = 1024
"""Smaller batches (live ones) run in arrival order: there is little to group."""


@njit(nogil=True, cache=True)
def _counting_order(gid, n_keys):
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(gid.shape[0]):
        start[gid[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    order = np.empty(gid.shape[0], dtype=np.int64)
    for i in range(gid.shape[0]):
        g = gid[i]
        order[start[g]] = i
        start[g] += 1
    return order


def key_order(gid: np.ndarray, n_keys: int) -> np.ndarray:
    """Row indices grouped by key id (0 <= id < n_keys), each key's rows in arrival order.

    A counting sort, O(rows + keys), unless the keys far outnumber the rows (numpy's stable
    argsort of int64 is a merge sort, several times slower).
    """
    if n_keys > 4 * gid.shape[0]:
        return np.argsort(gid, kind="stable")
    return _counting_order(np.ascontiguousarray(gid, dtype=np.int64), n_keys)


def run_grouped(run: Callable[..., dict[str, np.ndarray]], steps: list[Any], gid: np.ndarray,
                ts: np.ndarray, columns: dict[str, np.ndarray], n_keys: int,
                *args: Any) -> dict[str, np.ndarray]:
    """``run(key, ts, columns, *args)`` (a lane's) on the rows grouped by key; outputs in
    arrival order. Only the columns ``steps`` read are gathered."""
    order = key_order(gid, n_keys)
    needed = {c for s in steps for c in s.input_columns}
    part = run(gid[order], ts[order], {c: v[order] for c, v in columns.items() if c in needed},
               *args)
    out: dict[str, np.ndarray] = {}
    for name, values in part.items():
        back = np.empty_like(values)
        back[order] = values
        out[name] = back
    return out
