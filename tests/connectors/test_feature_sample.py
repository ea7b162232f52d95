"""The research report's row sample: exact bottom-k, whatever columns each batch has."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tickflow.connectors.feature_stats import FeatureStats, SampleColumns


def batch(n: int, start: int, columns: list[str]) -> pa.RecordBatch:
    rows = np.arange(start, start + n, dtype=np.float64)
    data = {"symbol": pa.array(["A"] * n)}
    for k, name in enumerate(columns):
        values = pa.array(rows + 1000 * k)
        if name == "gappy":  # nulls take the Arrow path; they come back as NaN
            values = pa.array([None if r % 3 == 0 else r for r in rows], pa.float64())
        data[name] = values
    data["flag"] = pa.array((rows % 2).astype(np.int8))
    return pa.RecordBatch.from_pydict(data)


def test_the_sample_is_the_rows_with_the_k_smallest_keys_across_changing_columns() -> None:
    k = 500
    stats, cols = FeatureStats(sample_rows=k, seed=3), SampleColumns({"symbol"})
    keys_of_rows = np.full(0, np.nan)
    start = 0
    layouts = [["a", "b"], ["a", "b"], ["b", "c", "gappy"], ["a"], ["a", "b", "c", "gappy"]]
    for i, names in enumerate(layouts * 3):
        n = 700 + 50 * i
        twin = np.random.Generator(np.random.PCG64())  # gives the keys draw() will give
        twin.bit_generator.state = stats._rng.bit_generator.state
        keys_of_rows = np.concatenate([keys_of_rows, twin.random(n)])
        take, keys = stats.draw(n)
        b = batch(n, start, names)
        stats.add(keys, *cols.rows(b, take), np.zeros(len(take), dtype=np.int64))
        start += n
    sample, _ = stats.sample()
    expected_rows = np.sort(np.argsort(keys_of_rows)[:k])  # row numbers = column "a" values
    got_rows = np.sort(np.where(np.isnan(sample["a"]), sample["b"], sample["a"]))
    assert np.array_equal(got_rows, expected_rows.astype(np.float64))
    assert list(sample) == ["a", "b", "flag", "c", "gappy"]
    # where a column was absent from a row's batch it is missing, elsewhere it is the value
    assert np.isnan(sample["c"]).any() and not np.isnan(sample["flag"]).any()
    present = ~np.isnan(sample["gappy"])
    assert present.any() and (~present).any()
    assert np.all(sample["gappy"][present] % 3 != 0)
