"""The per-key bookkeeping of :meth:`KernelState.reserve` in numba, over a chunk's keys only.

The check that a chunk's rows fit their keys' per-row buffers ran numpy over every key of the
step (a ``bincount`` as long as the key axis, then gathers per tier): at 100,000 keys that was
a pass over all of them per step per morsel, whatever the morsel held. Here it costs what the
chunk holds: one pass over its rows to count each key's rows (shared by the steps that run on
the chunk), then one over its distinct keys per tier and count field.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

_SCRATCH = threading.local()


def census(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tally` of ``key``, shared by the steps that run on the same chunk.

    A lane hands every step of a pipeline the same key array, so the last chunk's answer is
    kept (per thread: one per lane) with a copy of its keys; a chunk equal to it (compared
    as bytes, far cheaper than the tally) gets it again. Callers must not change the arrays.
    """
    last = getattr(_SCRATCH, "last", None)
    if last is not None and last[0] == n_keys and np.array_equal(last[1], key):
        return last[2], last[3]
    seen = getattr(_SCRATCH, "seen", None)
    if seen is None or seen.size < n_keys:
        seen = _SCRATCH.seen = np.zeros(max(n_keys, 2 * (seen.size if seen is not None else 0)),
                                        dtype=np.int32)
    uniq, rows = tally(key, seen, n_keys)
    _SCRATCH.last = (n_keys, key.copy(), uniq, rows)
    return uniq, rows


@njit(nogil=True, cache=True)
def tally(key, seen, n_keys):
    """The distinct keys of ``key`` below ``n_keys`` (first-seen order) and each one's rows.

    ``seen`` is scratch indexed by key id (at least ``n_keys`` long), all zeros, and left all
    zeros again. (A cross-key step's chunk holds global key ids over its single state row.)
    """
    uniq = np.empty(key.shape[0], dtype=np.int64)
    n = 0
    for i in range(key.shape[0]):
        k = key[i]
        if k < 0 or k >= n_keys:
            continue
        if seen[k] == 0:
            uniq[n] = k
            n += 1
        seen[k] += 1
    rows = np.empty(n, dtype=np.int64)
    for j in range(n):
        k = uniq[j]
        rows[j] = seen[k]
        seen[k] = 0
    return uniq[:n], rows


@njit(nogil=True, cache=True)
def raise_to(need, uniq, tier_of, tier, local, counts):
    """``need[j] = max(need[j], counts[row])`` for each key ``uniq[j]`` living in ``tier``;
    its row is its key id in tier 0 (every key when ``tier_of`` is empty), else ``local``'s."""
    everyone = tier_of.shape[0] == 0
    for j in range(uniq.shape[0]):
        k = uniq[j]
        if everyone:
            c = counts[k]
        elif tier_of[k] != tier:
            continue
        elif tier == 0:
            c = counts[k]
        else:
            c = counts[local[k]]
        if c > need[j]:
            need[j] = c


@njit(nogil=True, cache=True)
def overflowing(need, uniq, tier_of, widths):
    """Indices ``j`` whose ``need[j]`` is past the width of the tier key ``uniq[j]`` lives in
    (``widths`` by tier; tier 0 for all when ``tier_of`` is empty)."""
    everyone = tier_of.shape[0] == 0
    out = np.empty(uniq.shape[0], dtype=np.int64)
    n = 0
    for j in range(uniq.shape[0]):
        w = widths[0] if everyone else widths[tier_of[uniq[j]]]
        if need[j] > w:
            out[n] = j
            n += 1
    return out[:n]
