"""Keys placed on a run's partitions by their rows, so that every task has as much to do.

Why: the key hash (:mod:`tickflow.engine.executors.partition`) knows nothing of how many rows a
key has. With few keys of very different volume it gave two tasks 47.5% and 52.5% of the 14
simulated symbols' rows, and a run on two workers waits for the larger task. The client knows
the rows before it submits anything: a dataset that ``run-job partition`` wrote lists each
file's rows and keys in its manifest, and a file's key column is cheap to count. A
:data:`~tickflow.engine.executors.partition.Placement` made here travels in the plan; every
task of the run, and every source of the job, uses the same one.

On a dataset whole files are placed (each is then read by one task, without a key filter); on
other Parquet input, keys are. A key the placement does not name is hashed as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tickflow.connectors.parquet import resolve_parquet_paths
from tickflow.engine.executors.partition import Placement
from tickflow.engine.executors.partitioned_dataset import read_manifest

# rows whose keys the client counts at most: row groups spread over the input (interleaved
# ticks have every key in every row group, so a sample gives each key's share)
SAMPLED_ROWS = 1 << 20
_IMPROVE_ROUNDS = 64


def balance(weights: Sequence[tuple[Hashable, int]], partitions: int) -> dict[Hashable, int]:
    """Items onto ``partitions`` bins so that the heaviest bin is as light as found.

    Largest first onto the lightest bin, then single moves and pairwise swaps between the
    heaviest bin and another while they lower the heavier of the two. Deterministic: ties go
    to the lower bin and the earlier item.
    """
    order = sorted(range(len(weights)), key=lambda i: (-weights[i][1], i))
    loads = [0] * partitions
    bins: list[list[int]] = [[] for _ in range(partitions)]
    for i in order:
        b = min(range(partitions), key=lambda j: (loads[j], j))
        bins[b].append(i)
        loads[b] += weights[i][1]
    for _ in range(_IMPROVE_ROUNDS):
        if not _improve(weights, bins, loads):
            break
    return {weights[i][0]: b for b, items in enumerate(bins) for i in items}


def _improve(weights: Sequence[tuple[Hashable, int]], bins: list[list[int]],
             loads: list[int]) -> bool:
    """One move or swap out of the heaviest bin that lowers the pair's maximum, if any."""
    heavy = max(range(len(loads)), key=lambda j: (loads[j], -j))
    best: tuple[int, int, int, int | None] | None = None  # new max, other bin, item, swapped
    for other in range(len(loads)):
        if other == heavy or loads[other] >= loads[heavy]:
            continue
        for i in bins[heavy]:
            w = weights[i][1]
            candidates: list[tuple[int, int | None]] = [(w, None)]
            candidates += [(w - weights[g][1], g) for g in bins[other]]
            for delta, g in candidates:
                if delta <= 0:
                    continue
                new_max = max(loads[heavy] - delta, loads[other] + delta)
                if new_max < loads[heavy] and (best is None or new_max < best[0]):
                    best = (new_max, other, i, g)
    if best is None:
        return False
    _, other, i, g = best
    bins[heavy].remove(i)
    bins[other].append(i)
    moved = weights[i][1]
    if g is not None:
        bins[other].remove(g)
        bins[heavy].append(g)
        moved -= weights[g][1]
    loads[heavy] -= moved
    loads[other] += moved
    return True


def dataset_placement(path: str, key: str, partitions: int) -> Placement | None:
    """Whole files of the dataset at ``path`` placed by their rows, as keys; None when ``path``
    is not a dataset split by ``key`` whose manifest lists exactly its files, or when it has
    fewer non-empty files than ``partitions``."""
    if partitions < 2 or not os.path.isdir(os.path.expanduser(path)):
        return None
    manifest = read_manifest(path)
    if manifest is None or manifest.by != key:
        return None
    listed = {f.path.resolve() for f in manifest.files}
    if {p.resolve() for p in resolve_parquet_paths(path)} != listed:
        return None  # the tasks will not trust it either
    files = [f for f in manifest.files if f.rows]
    if len(files) < partitions:
        return None
    placed = balance([(f.part, f.rows) for f in files], partitions)
    return {k: placed[f.part] for f in files for k in f.keys}


def counted_placement(files: Sequence[Any], key: str, partitions: int) -> Placement | None:
    """Keys of Parquet ``files`` placed by their rows, counted in the key column of row groups
    spread evenly over the files (about ``SAMPLED_ROWS``); None with fewer keys than
    ``partitions``."""
    if partitions < 2:
        return None
    groups = []  # (file, row group, rows) of every row group
    for file in files:
        meta = pq.read_metadata(file)
        groups += [(file, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    total = sum(rows for *_, rows in groups)
    if not total:
        return None
    wanted = max(1, math.ceil(SAMPLED_ROWS * len(groups) / total))  # row groups to count
    picked = range(len(groups)) if wanted >= len(groups) else \
        sorted({round(i * (len(groups) - 1) / max(1, wanted - 1)) for i in range(wanted)})
    counts: dict[str | None, int] = {}
    opened: dict[Any, pq.ParquetFile] = {}
    for index in picked:
        file, group, _ = groups[index]
        pf = opened.setdefault(file, pq.ParquetFile(file))
        column = pf.read_row_group(group, columns=[key]).column(key)
        for entry in pc.value_counts(column).to_pylist():
            value = entry["values"]
            text = None if value is None else str(value)
            counts[text] = counts.get(text, 0) + int(entry["counts"])
    if len(counts) < partitions:
        return None
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return balance(ordered, partitions)  # type: ignore[return-value]


def run_placement(sources: Sequence[Any], key: str, partitions: int) -> Placement | None:
    """The placement of a run reading ``sources`` (Parquet sources): from the first that gives
    one, a dataset's manifest or else its key column counted; None with one partition, or
    when no source gives one (the key hash then places every key). A source that cannot be
    read gives none here: its task reports the error."""
    from tickflow.engine.errors import SourceError

    for source in sources:
        path = getattr(getattr(source, "config", None), "path", None)
        if not isinstance(path, str) or not hasattr(source, "files"):
            continue
        try:
            placed = dataset_placement(path, key, partitions) or \
                counted_placement(source.files(), key, partitions)
        except (OSError, ValueError, KeyError, SourceError):  # ArrowException: a ValueError
            placed = None
        if placed:
            return placed
    return None
