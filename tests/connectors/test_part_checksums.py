"""Committed output parts carry their row count and sha256; a part changed after its commit is
named on resume and at the merge, on real files."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from tickflow.connectors.parquet import PartFiles
from tickflow.engine.errors import SinkError


def _parts(tmp_path) -> tuple[PartFiles, dict]:
    parts = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                      statistics=False)
    parts.seek(None)
    position: dict = {}
    for k in range(3):
        parts.write(pa.record_batch({"x": pa.array(range(k * 500, k * 500 + 500))}))
        position = parts.commit()
    return parts, position


def test_commit_records_rows_and_sha256_and_a_clean_resume_merges(tmp_path):
    parts, position = _parts(tmp_path)
    assert position["parts"] == 3 and [d[0] for d in position["digests"]] == [500] * 3
    again = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                      statistics=False)
    again.seek(position)
    again.schema = pa.schema([("x", pa.int64())])
    out = again.merge({})
    out.close()
    assert out.rows == 1500


@pytest.mark.parametrize("damage", ["truncate", "rewrite"])
def test_a_part_changed_after_its_commit_is_named(tmp_path, damage):
    parts, position = _parts(tmp_path)
    victim = parts._part(1)
    if damage == "truncate":
        os.truncate(victim, victim.stat().st_size // 2)
    else:
        data = bytearray(victim.read_bytes())
        data[10] ^= 0xFF
        victim.write_bytes(bytes(data))
    resumed = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                        statistics=False)
    with pytest.raises(SinkError, match="part-000001.parquet"):
        resumed.seek(position)
    parts.schema = pa.schema([("x", pa.int64())])
    with pytest.raises(SinkError, match="part-000001.parquet"):
        parts.merge({})
    assert not (tmp_path / "out.parquet").exists()
