"""Part files joined without decoding (connectors/parquet_concat.py) read back as the rows
written, with the output's metadata, by pyarrow and by polars; footers survive a decode and
encode byte for byte; parts that cannot be joined as they are take the decoding merge."""

from __future__ import annotations

import struct

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.parquet_concat import Unsupported, concat, decode, encode
from tickflow.connectors.parquet_parts import PartFiles


def _batch(k: int, n: int = 700) -> pa.RecordBatch:
    rng = np.random.default_rng(k)
    price = rng.normal(100, 1, n)
    price[::7] = np.inf  # Arrow's equality counts NaN as unequal to itself
    return pa.record_batch({
        "timestamp": pa.array(np.arange(k * n, (k + 1) * n) * 1_000, pa.timestamp("us", "UTC")),
        "symbol": pa.array([f"S{i % 37}" for i in range(n)]),
        "price": pa.array(price),
        "size": pa.array([None if i % 5 == 0 else float(i) for i in range(n)], pa.float64()),
        "flag": pa.array((np.arange(n) % 3).astype(np.int8)),
    })


def _footer(path) -> bytes:
    data = path.read_bytes()
    n = struct.unpack("<I", data[-8:-4])[0]
    return data[-8 - n:-8]


@pytest.mark.parametrize("compression,statistics", [("none", False), ("lz4", True),
                                                     ("zstd", False)])
def test_joined_parts_read_back_as_the_rows_written(tmp_path, compression, statistics):
    parts = PartFiles(str(tmp_path / "out.parquet"), compression=compression,
                      row_group_rows=1024, statistics=statistics)
    parts.seek(None)
    batches = [_batch(k) for k in range(5)]
    parts.schema = batches[0].schema
    for k, batch in enumerate(batches):
        parts.write(batch)
        if k % 2 == 1:
            parts.commit()
    parts.commit()
    assert parts.count == 3
    out = parts.merge({"job_name": "joined"})
    out.close()
    assert out.rows == 3500 and out.row_groups == 5  # 1024 + 376, 1024 + 376, 700
    path = tmp_path / "out.parquet"
    expected = pa.Table.from_batches(batches)
    got = pq.read_table(path)
    assert got.schema.metadata[b"job_name"] == b"joined"
    assert got.replace_schema_metadata(None).equals(expected.replace_schema_metadata(None))
    meta = pq.read_metadata(path)
    assert meta.num_rows == 3500
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == \
        [1024, 376, 1024, 376, 700]
    # another reader, which seeks every column chunk by the footer's offsets
    assert pl.read_parquet(path).equals(pl.from_arrow(expected.replace_schema_metadata(None)))
    assert encode(decode(_footer(path))) == _footer(path)


def test_a_part_of_other_columns_is_not_joined_and_the_merge_decodes_it(tmp_path):
    parts = PartFiles(str(tmp_path / "out.parquet"), compression="none", row_group_rows=1024,
                      statistics=False)
    parts.seek(None)
    narrow = pa.record_batch({"x": pa.array([1, 2, 3], pa.int32())})
    parts.schema = narrow.schema
    parts.write(narrow)
    parts.commit()
    template = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), template)
    with open(tmp_path / "joined", "wb") as fh, pytest.raises(Unsupported):
        concat([parts._part(0)], template.read_bytes(), fh)
    parts.schema = pa.schema([("x", pa.int64())])  # the output's type differs from the part's
    out = parts.merge({})
    out.close()
    assert pq.read_table(tmp_path / "out.parquet").column("x").to_pylist() == [1, 2, 3]
    assert pq.read_table(tmp_path / "out.parquet").schema.field("x").type == pa.int64()


def test_no_parts_give_an_empty_file_of_the_schema(tmp_path):
    parts = PartFiles(str(tmp_path / "out.parquet"), compression="none", row_group_rows=1024,
                      statistics=False)
    parts.seek(None)
    parts.schema = _batch(0).schema
    out = parts.merge({})
    out.close()
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.schema.names == parts.schema.names


def test_footers_decode_and_encode_byte_for_byte(tmp_path):
    table = pa.Table.from_batches([_batch(k) for k in range(3)])
    for i, kwargs in enumerate([{}, {"write_statistics": True, "compression": "zstd"},
                                {"write_page_index": True}, {"use_dictionary": False}]):
        path = tmp_path / f"f{i}.parquet"
        pq.write_table(table, path, row_group_size=900, **kwargs)
        assert encode(decode(_footer(path))) == _footer(path)


def test_a_committed_part_digest_is_that_of_the_file_read_back(tmp_path):
    """The digest is taken as the part is written (on the writer's thread), not read back."""
    from tickflow.connectors.part_checksums import part_digest

    parts = PartFiles(str(tmp_path / "out.parquet"), compression="zstd", row_group_rows=1024,
                      statistics=True)
    parts.seek(None)
    for k in range(3):
        parts.write(_batch(k, n=1500 + k))
        position = parts.commit()
    assert position["digests"] == [part_digest(parts._part(k)) for k in range(3)]
    assert [d[0] for d in position["digests"]] == [1500, 1501, 1502]
