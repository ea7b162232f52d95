"""Arrow columns as the contiguous numpy arrays that kernels and operators read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def float_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as contiguous float64 with NaN for nulls (what kernels read)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    if column.type != pa.float64():
        column = pc.cast(column, pa.float64())
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    return np.ascontiguousarray(column.to_numpy(zero_copy_only=False))
