"""Key -> partition assignment that every process and every run agrees on.

A distributed run sends all rows of one key to one partition so that the key's kernel state
lives in one place and its rows meet the kernels in arrival order. The assignment must be the
same on every worker and in every run, so it is a CRC-32 of the key's UTF-8 text modulo the
partition count, never Python's ``hash()`` (salted per process).
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def partition_of(key: object, partitions: int) -> int:
    """The partition of one key value.

    Args:
        key: the key value (a symbol); ``None`` (a null key) hashes as the empty string, and
            any other value as its ``str()``.
        partitions: the number of partitions, >= 1.

    Returns:
        An integer in ``[0, partitions)``.

    >>> partition_of("BTC-USD", 4) == partition_of("BTC-USD", 4)
    True
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, found {partitions}")
    text = "" if key is None else key if isinstance(key, str) else str(key)
    return zlib.crc32(text.encode("utf-8")) % partitions


def partition_ids(column: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """The partition of every row of a key column (int64), hashing each distinct value once."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    values = column.dictionary.to_pylist()
    lookup = np.empty(len(values) + 1, dtype=np.int64)
    for j, value in enumerate(values):
        lookup[j] = partition_of(value, partitions)
    lookup[-1] = partition_of(None, partitions)
    indices = column.indices
    if indices.null_count:
        indices = indices.fill_null(len(values))
    return lookup[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)]


def filter_partition(batch: pa.RecordBatch, key: str, partitions: int,
                     partition: int) -> pa.RecordBatch:
    """The rows of ``batch`` whose key falls in ``partition``, in their original order."""
    if partitions == 1:
        return batch
    mask = partition_ids(batch.column(key), partitions) == partition
    if mask.all():
        return batch
    return batch.filter(pa.array(mask))
