"""A replay reads its capture one row group at a time: a long ``--replay`` (a soak, days of a
capture) must not hold the file's bytes as it goes (pyarrow's pre-buffering kept every row
group read until the file was closed)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.connectors.replay import capture_chunks
from tickflow.connectors.simulator import write_simulated_parquet


def test_replaying_a_parquet_capture_holds_about_one_row_group(tmp_path: Path) -> None:
    capture = tmp_path / "capture.parquet"
    write_simulated_parquet(capture, rows=400_000, row_group_rows=50_000, compression="none")
    groups, size = pq.ParquetFile(capture).num_row_groups, capture.stat().st_size
    assert groups == 8
    before = pa.total_allocated_bytes()
    held, rows = [], 0
    for pairs, _ts in capture_chunks(capture):
        rows += len(pairs)
        held.append(pa.total_allocated_bytes() - before)
    assert rows == 400_000
    # one row group is an eighth of the file; the whole file was held before
    assert max(held) < size / 4, (max(held), size)
