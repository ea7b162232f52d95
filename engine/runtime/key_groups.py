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
GROUP_MIN_KEYS = 4096
"""With fewer keys every key's state stays in cache and a key's rows are already close
together: the gather and scatter cost about what grouping saves (measured at 14 and 2,000
keys; at 100,000 keys grouping saves a third)."""


@njit(nogil=True, cache=True)
def _counting_order(gid, n_keys):
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(gid.shape[0]):
        start[gid[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    order = np.empty(gid.shape[0], dtype=np.int64)
    where = np.empty(gid.shape[0], dtype=np.int64)
    for i in range(gid.shape[0]):
        g = gid[i]
        order[start[g]] = i
        where[i] = start[g]
        start[g] += 1
    return order, where


def key_order(gid: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, where): row indices grouped by key id (0 <= id < n_keys), each key's rows in
    arrival order, and the inverse: row i is at ``where[i]`` of the grouped rows.

    A counting sort, O(rows + keys), unless the keys far outnumber the rows (numpy's stable
    argsort of int64 is a merge sort, several times slower).
    """
    if n_keys > 4 * gid.shape[0]:
        order = np.argsort(gid, kind="stable")
        where = np.empty_like(order)
        where[order] = np.arange(order.shape[0])
        return order, where
    return _counting_order(np.ascontiguousarray(gid, dtype=np.int64), n_keys)


def run_grouped(run: Callable[..., dict[str, np.ndarray]], steps: list[Any], gid: np.ndarray,
                ts: np.ndarray, columns: dict[str, np.ndarray], n_keys: int,
                *args: Any) -> dict[str, np.ndarray]:
    """``run(key, ts, columns, *args)`` (a lane's) on the rows grouped by key; outputs in
    arrival order. Only the columns ``steps`` read are gathered."""
    order, where = key_order(gid, n_keys)
    needed = {c for s in steps for c in s.input_columns}
    part = run(gid[order], ts[order], {c: v[order] for c, v in columns.items() if c in needed},
               *args)
    # back to arrival order by a gather through the inverse: numpy gathers faster than it
    # scatters (about 2 ns an element against 3 on the research job's 44 outputs); each
    # grouped column is let go once gathered, so the outputs are not held twice
    return {name: part.pop(name)[where] for name in list(part)}
