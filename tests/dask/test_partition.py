"""Key -> partition assignment: stable across processes and runs, order-preserving filter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tickflow.connectors.base import RunContext
from tickflow.connectors.parquet import ParquetSource, ParquetSourceConfig
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.executors.partition import (
    ScanCounts,
    filter_partition,
    partition_batches,
    partition_ids,
    partition_of,
)


def test_assignment_is_crc32_of_the_key_text() -> None:
    # fixed values: changing the hash would silently move every key of existing datasets
    assert [partition_of(s, 8) for s in ("BTC-USD", "ETH-USD", "SOL-USD")] == [0, 7, 3]
    assert partition_of(None, 5) == partition_of("", 5) == 0
    assert partition_of(42, 7) == partition_of("42", 7)


def test_assignment_is_the_same_in_a_process_with_another_hash_seed() -> None:
    code = ("from engine.executors.partition import partition_of;"
            "print([partition_of(s, 5) for s in ('BTC-USD', 'ETH-USD', 'DOGE-USD', 'X')])")
    here = [partition_of(s, 5) for s in ("BTC-USD", "ETH-USD", "DOGE-USD", "X")]
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True, timeout=60)
        assert out.stdout.strip() == str(here)


def test_rejects_a_partition_count_below_one() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        partition_of("BTC-USD", 0)


def test_filter_keeps_each_partitions_rows_in_arrival_order() -> None:
    symbols = ["BTC-USD", "ETH-USD", None, "SOL-USD", "BTC-USD", "DOGE-USD", None, "ETH-USD"]
    batch = pa.record_batch({"symbol": pa.array(symbols, pa.string()),
                             "row": pa.array(np.arange(len(symbols)))})
    ids = partition_ids(batch.column("symbol"), 3)
    assert ids.tolist() == [partition_of(s, 3) for s in symbols]
    seen: list[int] = []
    for k in range(3):
        part = filter_partition(batch, "symbol", 3, k)
        rows = part.column("row").to_pylist()
        assert rows == sorted(rows)
        assert all(partition_of(symbols[r], 3) == k for r in rows)
        seen.extend(rows)
    assert sorted(seen) == list(range(len(symbols)))
    dictionary = batch.column("symbol").dictionary_encode()
    assert partition_ids(dictionary, 3).tolist() == ids.tolist()


def test_a_partition_reads_only_the_row_groups_that_hold_its_keys(tmp_path: Path) -> None:
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD"]
    for i, sym in enumerate(symbols):  # one file per symbol, two row groups each
        write_simulated_parquet(tmp_path / "by_symbol" / f"{i}.parquet", rows=3_000,
                                symbols=[sym], seed=i, row_group_rows=1_500)
    write_simulated_parquet(tmp_path / "mixed.parquet", rows=6_000, symbols=symbols[:3],
                            seed=9, row_group_rows=1_500)
    for layout, groups in (("by_symbol", 10), ("mixed.parquet", 4)):
        source = ParquetSource(ParquetSourceConfig(path=str(tmp_path / layout)),
                               RunContext(job_name="t"))
        everything = pa.Table.from_batches(list(source.batches(None, 1_000)))
        seen = 0
        for k in range(3):
            counts = ScanCounts()
            got = pa.Table.from_batches(
                list(partition_batches(source, "symbol", 3, k, 1_000, counts)),
                schema=everything.schema)
            mask = partition_ids(everything.column("symbol"), 3) == k
            assert got.equals(everything.filter(pa.array(mask)))  # same rows, same order
            assert counts.row_groups_read + counts.row_groups_skipped == groups
            if layout == "by_symbol":
                assert counts.row_groups_read == 2 * len(set(everything.filter(
                    pa.array(mask)).column("symbol").to_pylist()))
            elif got.num_rows:
                assert counts.row_groups_skipped == 0
            seen += got.num_rows
        assert seen == everything.num_rows
