"""The tiledb backend stores a step as one attribute of packed records, and still reads the
arrays of a checkpoint written with an attribute per field (before), whole and by key ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiledb

from tests.state.test_backend_contract import assert_same, make_snapshot
from tickflow.engine.state.backend import FieldLayout, StateSnapshot
from tickflow.engine.state.tiledb import RECORD, TileDBStateBackend


def _attrs(uri: Path) -> list[str]:
    with tiledb.open(str(uri)) as array:
        return [array.schema.attr(i).name for i in range(array.schema.nattr)]


def test_a_step_is_one_array_of_one_attribute_of_packed_records(tmp_path: Path) -> None:
    snap = make_snapshot(300)
    TileDBStateBackend(tile_keys=64).write(tmp_path, snap)
    for sid in snap.steps:
        assert _attrs(tmp_path / "tiledb" / sid) == [RECORD], sid
    back = TileDBStateBackend().read(tmp_path, snap.layout(), snap.rows())
    assert_same(snap.steps, back)


def _cell_dtype(f: FieldLayout) -> np.dtype:
    base = np.dtype(f.dtype)
    return np.dtype([(f"c{i}", base) for i in range(f.size)]) if f.shape else base


def _write_per_field(directory: Path, snap: StateSnapshot) -> None:
    """What the backend wrote before: one attribute per field, shaped fields as records."""
    rows = snap.rows()
    for sid, fields in snap.layout().items():
        n = rows[sid]
        dim = tiledb.Dim(name="key_id", domain=(0, n - 1), tile=min(n, 64), dtype=np.int64)
        attrs = [tiledb.Attr(name=f.name, dtype=_cell_dtype(f),
                             filters=tiledb.FilterList([tiledb.LZ4Filter()])) for f in fields]
        uri = str(directory.absolute() / "tiledb" / sid)
        tiledb.Array.create(uri, tiledb.ArraySchema(domain=tiledb.Domain(dim), attrs=attrs))
        with tiledb.open(uri, "w", timestamp=1) as array:
            cells = {}
            for f in fields:
                arr = np.ascontiguousarray(snap.steps[sid][f.name])
                dtype = array.schema.attr(f.name).dtype
                cells[f.name] = arr.reshape(n, f.size).view(dtype).reshape(n) if f.shape \
                    else arr
            array[0:n] = cells


def test_a_checkpoint_written_with_an_attribute_per_field_reads_back(tmp_path: Path) -> None:
    snap = make_snapshot(500, seed=5)
    (tmp_path / "tiledb").mkdir()
    _write_per_field(tmp_path, snap)
    assert len(_attrs(tmp_path / "tiledb" / "zscore_fast")) == 6
    backend = TileDBStateBackend()
    assert_same(snap.steps, backend.read(tmp_path, snap.layout(), snap.rows()))
    ids = np.array([499, 0, 250])
    per_key = {sid: f for sid, f in snap.layout().items() if snap.rows()[sid] == 500}
    assert_same({sid: {k: v[ids] for k, v in snap.steps[sid].items()} for sid in per_key},
                backend.read(tmp_path, per_key, snap.rows(), ids))
