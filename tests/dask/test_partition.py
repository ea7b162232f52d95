"""Key -> partition assignment: stable across processes and runs, order-preserving filter."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from engine.executors.partition import filter_partition, partition_ids, partition_of


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
