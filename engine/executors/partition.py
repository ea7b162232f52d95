"""Key -> partition assignment that every process and every run agrees on.

A distributed run sends all rows of one key to one partition so that the key's kernel state
lives in one place and its rows meet the kernels in arrival order. The assignment must be the
same on every worker and in every run, so it is a CRC-32 of the key's UTF-8 text modulo the
partition count, never Python's ``hash()`` (salted per process). A run may instead carry a
:data:`Placement` made on the client from the input's row counts (its tasks then get about as
many rows each, not whatever the hash gives); keys it does not name still go by the hash. A
partition's task reads only the row groups that hold its keys (:func:`partition_batches`),
or, on a dataset written by ``run-job partition``
(:mod:`tickflow.engine.executors.partitioned_dataset`), only the files of its keys.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tickflow.engine.errors import SourceError

PARTITION_HASH = "crc32(utf-8 key) % partitions"
# key text (None: the null key) -> partition, decided once on the client for a whole run
Placement = Mapping[str | None, int]


def partition_of(key: object, partitions: int, placement: Placement | None = None) -> int:
    """The partition of one key value.

    Args:
        key: the key value (a symbol); ``None`` (a null key) hashes as the empty string, and
            any other value as its ``str()``.
        partitions: the number of partitions, >= 1.
        placement: partitions chosen for some keys (by their text); the others are hashed.

    Returns:
        An integer in ``[0, partitions)``.

    >>> partition_of("BTC-USD", 4) == partition_of("BTC-USD", 4)
    True
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, found {partitions}")
    text = None if key is None else key if isinstance(key, str) else str(key)
    if placement:
        placed = placement.get(text)
        if placed is not None:
            return placed
    text = text or ""
    return zlib.crc32(text.encode("utf-8")) % partitions


def partition_ids(column: pa.Array | pa.ChunkedArray, partitions: int,
                  placement: Placement | None = None) -> np.ndarray:
    """The partition of every row of a key column (int64), hashing each distinct value once."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    values = column.dictionary.to_pylist()
    lookup = np.empty(len(values) + 1, dtype=np.int64)
    for j, value in enumerate(values):
        lookup[j] = partition_of(value, partitions, placement)
    lookup[-1] = partition_of(None, partitions, placement)
    indices = column.indices
    if indices.null_count:
        indices = indices.fill_null(len(values))
    return lookup[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)]


def filter_partition(batch: pa.RecordBatch, key: str, partitions: int,
                     partition: int, placement: Placement | None = None) -> pa.RecordBatch:
    """The rows of ``batch`` whose key falls in ``partition``, in their original order."""
    if partitions == 1:
        return batch
    mask = partition_ids(batch.column(key), partitions, placement) == partition
    if mask.all():
        return batch
    return batch.filter(pa.array(mask))


@dataclass
class ScanCounts:
    """What a partition's read touched: row groups read in full, and those skipped."""

    row_groups_read: int = 0
    row_groups_skipped: int = 0


def partition_batches(source: Any, key: str, partitions: int, partition: int,
                      batch_rows: int, counts: ScanCounts | None = None,
                      files: list[tuple[Path, bool]] | None = None,
                      whole_rows: int | None = None,
                      placement: Placement | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of one partition's keys from a parquet source, in the source's order.

    Each row group's key column is read first; a row group holding none of the partition's
    keys is skipped without decoding its other columns. Interleaved ticks put every key in
    every row group (nothing is skipped), but inputs laid out by symbol (a file or row group
    per symbol) are read only where the partition's keys are.

    Args:
        source: a ``ParquetSource`` (its files and normalised schema are used).
        key: the key column.
        partitions: the partition count.
        partition: which partition to read.
        batch_rows: rows per batch read (before the filter).
        counts: updated with the row groups read and skipped, when given.
        files: the files to read instead of all the source's, each with ``True`` when it holds
            only this partition's keys (read whole, no key filter): a partitioned dataset's plan.
        whole_rows: rows per batch of a file read whole (default ``batch_rows``).
        placement: the run's keys placed by rows (:func:`partition_of`), if any.
    """
    counts = counts if counts is not None else ScanCounts()
    target = source.schema()
    plan = files if files is not None else [(f, partitions == 1) for f in source.files()]
    for file, whole in plan:
        try:
            # pre_buffer=False as in ParquetSource: bounded memory on large files
            pf = pq.ParquetFile(file, pre_buffer=False)
            if whole:
                counts.row_groups_read += pf.num_row_groups
                for batch in pf.iter_batches(batch_size=whole_rows or batch_rows,
                                             columns=target.names):
                    if batch.num_rows:
                        yield _conform(batch, target)
                continue
            for group in range(pf.num_row_groups):
                keys = pf.read_row_group(group, columns=[key]).column(key)
                if partitions > 1 and \
                        not (partition_ids(keys, partitions, placement) == partition).any():
                    counts.row_groups_skipped += 1
                    continue
                counts.row_groups_read += 1
                for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group],
                                             columns=target.names):
                    if batch.num_rows:
                        yield filter_partition(_conform(batch, target), key, partitions,
                                               partition, placement)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"parquet source: cannot read {str(file)!r}: {exc}") from None


def _conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """The batch in the source's normalised schema (timestamps as us/UTC), no metadata."""
    if not batch.schema.equals(target, check_metadata=False):
        batch = batch.cast(target, safe=False)
    return batch.replace_schema_metadata(None) if batch.schema.metadata else batch
