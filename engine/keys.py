"""Dense integer ids for key values (symbols), stable for the whole run."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class KeyIndex:
    """Maps each distinct key value to 0, 1, 2, ... in order of first appearance.

    Kernels index their state arrays by these ids; a batch's keys are dictionary-encoded by
    Arrow and only the (few) distinct values go through Python.
    """

    def __init__(self) -> None:
        self.ids: dict[object, int] = {}
        self.values: list[object] = []

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        dictionary = column.dictionary.to_pylist()
        lookup = np.empty(len(dictionary) + 1, dtype=np.int64)
        for j, value in enumerate(dictionary):
            gid = self.ids.get(value)
            if gid is None:
                gid = self.ids[value] = len(self.values)
                self.values.append(value)
            lookup[j] = gid
        # nulls form their own key (written as None), so no row is dropped
        null_gid = self.ids.get(None)
        indices = column.indices
        if indices.null_count:
            if null_gid is None:
                null_gid = self.ids[None] = len(self.values)
                self.values.append(None)
            lookup[-1] = null_gid
            idx = indices.fill_null(len(dictionary)).to_numpy()
        else:
            idx = indices.to_numpy(zero_copy_only=False)
        return lookup[idx.astype(np.int64, copy=False)]
