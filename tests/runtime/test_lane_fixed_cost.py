"""A lane computes a batch's key count once for all its steps and asks only cross-key steps for
their keys' ids: the live job's outputs stay bit-identical whatever the batch size."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import tickflow as tf
from tests.kafka.util import simulated
from tickflow.engine.columns import arrow_array, float_column
from tickflow.engine.runtime.pipeline import Lane, Pipeline, timestamp_us
from tickflow.engine.step import BoundKernel


def outputs(batch_rows: int, ticks: pa.Table) -> pa.Table:
    pipeline = Pipeline(tf.load_job("jobs/live.yaml").compiled())
    return pa.Table.from_batches([pipeline.process(b) for b in
                                  ticks.to_batches(max_chunksize=batch_rows)])


def test_small_batches_give_the_whole_runs_outputs_bit_for_bit() -> None:
    # keys appear over time (a later batch brings a higher key id than any before it)
    ticks = simulated(3_000, symbols=9, seed=4).combine_chunks()
    whole = outputs(3_000, ticks)
    for rows in (1, 7, 100):
        small = outputs(rows, ticks)
        assert small.schema == whole.schema
        for name in whole.column_names:
            a, b = small.column(name), whole.column(name)
            if pa.types.is_floating(a.type):
                assert np.array_equal(a.to_numpy().view(np.int64), b.to_numpy().view(np.int64)), \
                    (rows, name)
            else:
                assert a.equals(b), (rows, name)


def test_a_step_given_the_key_count_runs_as_when_it_finds_it() -> None:
    step = Pipeline(tf.load_job("jobs/live.yaml").compiled()).lanes[0].steps[0]
    rng = np.random.default_rng(1)
    key = rng.integers(0, 5, 200)
    ts = np.arange(200, dtype=np.int64) * 1_000
    inputs = [rng.random(200) * 100 for _ in step.input_columns]
    found, given = step.new_state(), step.new_state()
    for a, b in ((0, 50), (50, 51), (51, 200)):
        x = step.run(key[a:b], ts[a:b], [v[a:b] for v in inputs], found)
        y = step.run(key[a:b], ts[a:b], [v[a:b] for v in inputs], given,
                     n_keys=int(key[a:b].max()) + 1)
        for u, v in zip(x, y, strict=True):
            assert np.array_equal(u, v, equal_nan=True)


def test_only_cross_key_steps_are_asked_for_key_ids() -> None:
    pipeline = Pipeline(tf.load_job("jobs/live.yaml").compiled())
    steps: list[BoundKernel] = pipeline.lanes[0].steps
    assert not any(s.is_cross_key for s in steps)
    lane = Lane(steps)
    asked: list[str] = []

    def resolve(step: BoundKernel) -> tuple[int, ...]:
        asked.append(step.step_id)
        return ()

    ticks = simulated(50, symbols=3, seed=2)
    columns = {c: float_column(ticks.column(c)) for c in pipeline.source_inputs}
    key = np.arange(50, dtype=np.int64) % 3
    ts = np.arange(50, dtype=np.int64) * 1_000
    produced = lane.run(key, ts, columns, resolve=resolve)
    assert asked == [] and len(produced) >= len(steps)


def test_timestamps_viewed_as_int64_are_what_the_cast_gave() -> None:
    raw = np.array([0, -5_000, 10**9, 3_000, -(10**9), 7]) * 1_000
    mask = np.array([0, 0, 1, 0, 0, 0], dtype=bool)
    for tz in (None, "UTC", "Asia/Kolkata"):
        for unit in ("s", "ms", "us", "ns"):
            col = pa.array(raw, pa.timestamp(unit, tz), mask=mask)
            for part in (col, col.slice(1), col.slice(2, 3), col.slice(3)):
                expected = pc.fill_null(pc.cast(pc.cast(part, pa.timestamp("us", tz)),
                                                pa.int64()), 0).to_numpy()
                got = timestamp_us(pa.RecordBatch.from_arrays([part], ["timestamp"]))
                assert got.dtype == np.int64 and np.array_equal(got, expected), (unit, tz)


def test_output_columns_keep_each_dtypes_arrow_type() -> None:
    """arrow_array caches the Arrow type of a numpy dtype: every dtype keeps its own."""
    for _ in range(2):  # the second time from the cache
        for dt in (np.float64, np.float32, np.int8, np.int64, np.uint16, np.int32):
            v = (np.arange(7) * 3 - 5).astype(dt)
            for part in (v, v[::2]):
                a = arrow_array(part)
                assert a.type == pa.from_numpy_dtype(np.dtype(dt))
                assert a.to_pylist() == part.tolist()
