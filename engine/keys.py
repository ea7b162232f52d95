"""Dense integer ids for key values (symbols), stable for the whole run."""

from __future__ import annotations

from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickflow.engine.columns import to_numpy

_CACHED_DICTIONARIES = 8
"""Dictionaries whose id lookup is remembered: one per Parquet row group in flight is enough."""

_CACHED_VALUES = 1 << 18
"""At most this many values in the remembered dictionaries (the newest is always kept). At
100,000 keys each row group's dictionary grows to about 91,000 values, and eight of them held
15 MB an index (the dictionaries' buffers and their id arrays) at the end of the run, where the
peak is; the reader never hands back an older row group's dictionary."""


class KeyIndex:
    """Maps each distinct key value to 0, 1, 2, ... in order of first appearance.

    Kernels index their state arrays by these ids. A batch's keys are dictionary-encoded by
    Arrow and only the distinct values go through Python. The mapping of a dictionary is
    cached, so morsels that carry the same dictionary (a Parquet row group read with
    ``read_dictionary``, or few keys in a stable order) are mapped once.

    ``ids`` and ``values`` may be replaced wholesale (a restore does); the cache notices.
    """

    def __init__(self) -> None:
        self.ids: dict[object, int] = {}
        self.values: list[object] = []
        self._lookups: list[tuple[pa.Array, np.ndarray]] = []
        self._owner: tuple[int, int] = (id(self.ids), id(self.values))

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        lookup = self._lookup(column.dictionary)
        # nulls form their own key (written as None), so no row is dropped
        indices = column.indices
        if indices.null_count:
            null_gid = self.ids.get(None)
            if null_gid is None:
                null_gid = len(self.values)
                self._add([None])
            lookup = np.append(lookup, null_gid)
            idx = to_numpy(indices.fill_null(len(lookup) - 1))
        else:
            idx = to_numpy(indices)
        return lookup[idx.astype(np.int64, copy=False)]

    def _lookup(self, dictionary: pa.Array) -> np.ndarray:
        """Key ids of a dictionary's values (cached by the dictionary's buffers)."""
        if self._owner != (id(self.ids), id(self.values)):
            self._lookups.clear()
            self._owner = (id(self.ids), id(self.values))
        # a Parquet reader hands each morsel its own copy of a row group's dictionary, so
        # entries are matched by content (a memcmp in Arrow), most recent first
        for cached, lookup in reversed(self._lookups):
            if len(cached) == len(dictionary) and cached.equals(dictionary):
                return lookup
        # once a column chunk's dictionary page is full, the writer falls back to plain pages
        # and the reader's dictionary grows morsel by morsel, each one's starting with the one
        # before: only the new tail goes through Python (at 100,000 keys each morsel of
        # 65,536 rows brought a dictionary of 65-91K values, 1.3 s of a 2M-row run)
        prefix = next(((cached, lookup) for cached, lookup in reversed(self._lookups)
                       if 0 < len(cached) < len(dictionary)
                       and dictionary.slice(0, len(cached)).equals(cached)), None)
        if prefix is not None:
            tail = self._map(dictionary.slice(len(prefix[0])))
            lookup = np.concatenate([prefix[1], tail])
            # (the prefix is not asked for again: a row group's dictionary only grows)
            self._lookups = [e for e in self._lookups if e[0] is not prefix[0]]
        else:
            lookup = self._map(dictionary)
        self._lookups.append((dictionary, lookup))
        while len(self._lookups) > 1 and (
                len(self._lookups) > _CACHED_DICTIONARIES
                or sum(len(c) for c, _ in self._lookups) > _CACHED_VALUES):
            del self._lookups[0]
        return lookup

    def _map(self, dictionary: pa.Array) -> np.ndarray:
        # one dict probe per distinct value: cheaper than an Arrow set lookup, which would
        # rebuild a hash table of every known key on each call
        values = dictionary.to_pylist()
        lookup = np.array(list(map(self.ids.get, values, repeat(-1))), dtype=np.int64)
        new = np.flatnonzero(lookup < 0)
        if new.size:
            fresh = [values[j] for j in new]
            distinct = list(dict.fromkeys(fresh))
            first = len(self.values)
            self._add(distinct)
            if len(distinct) == len(fresh):  # new ids in order, without a probe per value
                lookup[new] = np.arange(first, first + len(fresh))
            else:  # (a hand-built dictionary may repeat a value: ids stay unique)
                lookup[new] = list(map(self.ids.__getitem__, fresh))
        return lookup

    def _add(self, values: list[object]) -> None:
        """Give new (distinct) values the next ids."""
        self.ids.update(zip(values, range(len(self.values), len(self.values) + len(values)),
                            strict=True))
        self.values.extend(values)
