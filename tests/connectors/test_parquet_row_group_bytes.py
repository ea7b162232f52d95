"""Row groups bounded by bytes as well as rows (``row_group_bytes``), and Arrow's pool giving
back memory after each row group: a wide output's row groups stay small enough that the
memory in flight does not grow with its width, a narrow one's keep ``row_group_rows``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tickflow.connectors.base import RunContext
from tickflow.connectors.parquet_sink import ParquetSink, ParquetSinkConfig
from tickflow.connectors.parquet_writer import ROW_GROUP_STEP, AtomicParquetWriter, rows_within

CTX = RunContext(job_name="t")


def wide(rows: int, columns: int) -> pa.Table:
    """``columns`` float64 columns: 8 bytes a row each."""
    rng = np.random.default_rng(7)
    return pa.table({f"c{i}": rng.standard_normal(rows) for i in range(columns)})


def write(path: Path, table: pa.Table, batch_rows: int = ROW_GROUP_STEP, **options: object):
    writer = AtomicParquetWriter(path, table.schema, compression="none", **options)
    for batch in table.to_batches(max_chunksize=batch_rows):
        writer.write(batch)
    writer.close()
    return pq.read_metadata(path)


def test_rows_within() -> None:
    assert rows_within(262_144, 32 << 20, 60.0) == 262_144  # narrow: rows alone
    assert rows_within(262_144, 32 << 20, 420.0) == 65_536  # the research output
    assert rows_within(262_144, 32 << 20, 200.0) == 131_072
    assert rows_within(262_144, 32 << 20, 10_000.0) == 65_536  # never below one step
    assert rows_within(100_000, 1 << 20, 10_000.0) == 65_536
    assert rows_within(16_384, 1 << 20, 10_000.0) == 16_384  # never above rows


def test_wide_output_gets_smaller_row_groups(tmp_path: Path) -> None:
    table = wide(300_000, 40)  # 320 bytes a row: 262,144 rows would be 84 MB
    meta = write(tmp_path / "w.parquet", table)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == \
        [65_536] * 4 + [300_000 - 4 * 65_536]
    back = pq.read_table(tmp_path / "w.parquet")
    assert back.replace_schema_metadata(None).equals(table)


def test_narrow_output_keeps_row_group_rows(tmp_path: Path) -> None:
    table = wide(300_000, 4)  # 32 bytes a row: 8 MB a row group
    meta = write(tmp_path / "n.parquet", table)
    assert meta.num_row_groups == 2 and meta.row_group(0).num_rows == 262_144


def test_no_byte_bound(tmp_path: Path) -> None:
    meta = write(tmp_path / "u.parquet", wide(300_000, 40), row_group_bytes=None)
    assert meta.num_row_groups == 2 and meta.row_group(0).num_rows == 262_144


def test_sink_option_reaches_the_writer(tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    table = wide(200_000, 40)
    sink = ParquetSink(ParquetSinkConfig(path=str(out), row_group_bytes=None), CTX)
    for batch in table.to_batches(max_chunksize=ROW_GROUP_STEP):
        sink.write(batch)
    sink.close()
    assert pq.read_metadata(out).num_row_groups == 1
    assert ParquetSinkConfig(path="x.parquet").row_group_bytes == 32 << 20
    with pytest.raises(ValidationError):
        ParquetSinkConfig(path="x.parquet", row_group_bytes=1_000)
