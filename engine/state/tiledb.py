"""The tiledb state backend: one dense TileDB array per step, indexed by key id.

The array's single dimension is the key id, so a million keys load and save as whole columns
(one write and one read per step, no per-key work in Python). Reading a subset of key ids
(``run-job state``, shard paging) reads only the tiles that hold them.

A step's state is one attribute (:data:`RECORD`): each key's whole step state, every field in
declared order, packed as one fixed-size cell of ``itemsize / 8`` uint64 words (bytes when the
record is not a multiple of 8), the record the rocksdb backend stores too. Why: TileDB writes
a file per attribute and filters, tiles and describes each attribute's tiles apart; with an
attribute per field (331 for the research job) writing its 495 MB of state at 100K keys took
about 2.5 CPU-s, packed about 1.7 (docs/performance.md). Arrays written with an attribute per
field (before) are read as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tiledb

from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import (
    FieldLayout,
    StateBackend,
    StateSnapshot,
    StepLayout,
    check_ids,
    record_dtype,
)

_DIR = "tiledb"
_WRITTEN_AT = 1  # every array is written once, by one fragment
RECORD = "#record"
"""The attribute holding a step's packed records (a field name cannot start with ``#``)."""


def _cell_dtype(f: FieldLayout) -> np.dtype:
    base = np.dtype(f.dtype)
    if not f.shape:
        return base
    return np.dtype([(f"c{i}", base) for i in range(f.size)])


def _record_cell(itemsize: int) -> np.dtype:
    """A TileDB cell of ``itemsize`` bytes: uint64 words, or bytes for an odd size."""
    word = np.dtype("<u8") if itemsize % 8 == 0 else np.dtype("u1")
    return np.dtype([(f"w{i}", word) for i in range(itemsize // word.itemsize)])


def _pack(fields: dict[str, np.ndarray], layout: StepLayout, n: int) -> np.ndarray:
    rec = np.empty(n, dtype=record_dtype(layout))
    for f in layout:
        rec[f.name] = fields[f.name]
    return rec


def _from_cells(cells: np.ndarray, f: FieldLayout) -> np.ndarray:
    if not f.shape:
        return np.asarray(cells, dtype=np.dtype(f.dtype))
    base = np.ascontiguousarray(cells).view(np.dtype(f.dtype))
    return base.reshape(len(cells), *f.shape)


class TileDBStateBackend(StateBackend):
    """State as dense TileDB arrays indexed by key id, a step's records in one attribute.

    Args:
        tile_keys: keys per tile (the unit TileDB reads and compresses).
    """

    name = "tiledb"

    def __init__(self, tile_keys: int = 4_096, **options: Any):
        super().__init__(**options)
        self.tile_keys = tile_keys

    def write(self, directory: Path, snapshot: StateSnapshot) -> None:
        # absolute URIs: TileDB resolves relative ones against the directory it started in
        root = directory.absolute() / _DIR
        root.mkdir(parents=True, exist_ok=True)
        filters = tiledb.FilterList([tiledb.LZ4Filter()])
        rows = snapshot.rows()
        for sid, fields in snapshot.layout().items():
            n = rows[sid]
            if n == 0 or not fields:  # no keys yet, or a stateless step (e.g. midprice)
                continue
            # one step's records at a time: the copy costs the largest step, not the state
            rec = _pack(snapshot.steps[sid], fields, n)
            dim = tiledb.Dim(name="key_id", domain=(0, n - 1), tile=min(n, self.tile_keys),
                             dtype=np.int64)
            attr = tiledb.Attr(name=RECORD, dtype=_record_cell(rec.dtype.itemsize),
                               filters=filters)
            schema = tiledb.ArraySchema(domain=tiledb.Domain(dim), attrs=[attr], sparse=False)
            uri = str(root / sid)
            try:
                tiledb.Array.create(uri, schema)
                # a fixed fragment timestamp: a reader opens "as of now", and a fragment stamped
                # by a clock that reads ahead of the reader's would be silently left out
                with tiledb.open(uri, "w", timestamp=_WRITTEN_AT) as array:
                    # viewed as what the attribute holds (TileDB reads two float64 words as
                    # one complex128)
                    array[0:n] = {RECORD: rec.view(array.schema.attr(RECORD).dtype)}
            except tiledb.TileDBError as exc:
                raise StateError(f"tiledb state {uri}: cannot write: {exc}") from None

    def read(self, directory: Path, layout: dict[str, StepLayout], rows: dict[str, int],
             key_ids: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for sid, fields in layout.items():
            n_keys = rows[sid]
            ids = check_ids(key_ids, n_keys, sid)
            if not fields:
                out[sid] = {}
                continue
            if n_keys == 0 or (ids is not None and ids.size == 0):
                out[sid] = {f.name: np.empty((0, *f.shape), np.dtype(f.dtype)) for f in fields}
                continue
            uri = str(directory.absolute() / _DIR / sid)
            try:
                with tiledb.open(uri, "r") as array:
                    out[sid] = _read_step(array, uri, fields, n_keys, ids)
            except tiledb.TileDBError as exc:
                raise StateError(f"tiledb state {uri}: cannot read: {exc}") from None
        return out


def _read_step(array: Any, uri: str, fields: StepLayout, n_keys: int,
               ids: np.ndarray | None) -> dict[str, np.ndarray]:
    """One step's fields, all rows or ``ids``, from its packed records or (arrays written
    before) its attribute per field."""
    stored = {array.schema.attr(i).name for i in range(array.schema.nattr)}
    packed = stored == {RECORD}
    names = [RECORD] if packed else [f.name for f in fields]
    if not set(names) <= stored:
        raise StateError(f"tiledb state {uri}: missing field(s) "
                         f"{', '.join(sorted(set(names) - stored))}")
    if array.nonempty_domain() != ((0, n_keys - 1),):
        raise StateError(f"tiledb state {uri}: holds key ids "
                         f"{array.nonempty_domain()}, expected 0..{n_keys - 1}")
    if ids is None:
        data = array.query(attrs=names)[0:n_keys]
    else:
        lo, hi = int(ids.min()), int(ids.max())
        block = array.query(attrs=names)[lo:hi + 1]
        data = {k: v[ids - lo] for k, v in block.items()}
    if not packed:
        return {f.name: _from_cells(data[f.name], f) for f in fields}
    dtype = record_dtype(fields)
    cells = np.ascontiguousarray(data[RECORD])
    if cells.dtype.itemsize != dtype.itemsize:
        raise StateError(f"tiledb state {uri}: records of {cells.dtype.itemsize} bytes, the "
                         f"layout says {dtype.itemsize}")
    rec = cells.view(dtype)
    return {f.name: rec[f.name] for f in fields}  # views of one buffer: no copy
