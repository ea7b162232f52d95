"""The tiledb state backend: one dense TileDB array per step, one attribute per state field.

The array's single dimension is the key id, so a million keys load and save as whole columns
(one write and one read per step, no per-key work in Python). Fields with a per-key shape (ring
buffers) are stored as fixed-size record attributes of ``prod(shape)`` cells. Reading a subset
of key ids (``run-job state``, shard paging) reads only the tiles that hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tiledb

from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import FieldLayout, StateBackend, StateSnapshot, StepLayout, check_ids

_DIR = "tiledb"
_WRITTEN_AT = 1  # every array is written once, by one fragment


def _cell_dtype(f: FieldLayout) -> np.dtype:
    base = np.dtype(f.dtype)
    if not f.shape:
        return base
    return np.dtype([(f"c{i}", base) for i in range(f.size)])


def _to_cells(arr: np.ndarray, f: FieldLayout, cell: np.dtype | None = None) -> np.ndarray:
    """Per-key cells in the attribute's dtype ``cell`` (TileDB stores a record of two
    float64 as one complex128, so the records are viewed as what the attribute holds)."""
    if not f.shape:
        return np.ascontiguousarray(arr)
    flat = np.ascontiguousarray(arr).reshape(arr.shape[0], f.size)
    return flat.view(cell if cell is not None else _cell_dtype(f)).reshape(arr.shape[0])


def _from_cells(cells: np.ndarray, f: FieldLayout) -> np.ndarray:
    if not f.shape:
        return np.asarray(cells, dtype=np.dtype(f.dtype))
    base = np.ascontiguousarray(cells).view(np.dtype(f.dtype))
    return base.reshape(len(cells), *f.shape)


class TileDBStateBackend(StateBackend):
    """State as dense TileDB arrays indexed by key id.

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
            dim = tiledb.Dim(name="key_id", domain=(0, n - 1), tile=min(n, self.tile_keys),
                             dtype=np.int64)
            attrs = [tiledb.Attr(name=f.name, dtype=_cell_dtype(f), filters=filters)
                     for f in fields]
            schema = tiledb.ArraySchema(domain=tiledb.Domain(dim), attrs=attrs, sparse=False)
            uri = str(root / sid)
            try:
                tiledb.Array.create(uri, schema)
                # a fixed fragment timestamp: a reader opens "as of now", and a fragment stamped
                # by a clock that reads ahead of the reader's would be silently left out
                with tiledb.open(uri, "w", timestamp=_WRITTEN_AT) as array:
                    array[0:n] = {f.name: _to_cells(snapshot.steps[sid][f.name], f,
                                                    array.schema.attr(f.name).dtype)
                                  for f in fields}
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
                    names = [f.name for f in fields]
                    stored = {array.schema.attr(i).name for i in range(array.schema.nattr)}
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
            except tiledb.TileDBError as exc:
                raise StateError(f"tiledb state {uri}: cannot read: {exc}") from None
            out[sid] = {f.name: _from_cells(data[f.name], f) for f in fields}
        return out
