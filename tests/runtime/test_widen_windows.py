"""A live job's state starts at its full windows, with room for its first keys
(``Pipeline.widen_windows``, called by the driver's warm-up before the first tick): outputs
bit-identical to a pipeline that widens as rows come, no side tier ever made, and its state
saved and restored into a narrow pipeline gives the same outputs again."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import tickflow as tf
from tests.kafka.util import simulated
from tickflow.engine.runtime.pipeline import ROOM_KEYS, Pipeline
from tickflow.engine.state.lanes import gather, scatter


def _job() -> object:
    return tf.load_job("jobs/live.yaml").compiled()


def _bits(table: pa.Table) -> dict[str, object]:
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        out[name] = col.to_numpy(zero_copy_only=False).view(np.int64) \
            if pa.types.is_floating(col.type) else col
    return out


def _assert_same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema
    x, y = _bits(a), _bits(b)
    for name in a.column_names:
        if isinstance(x[name], np.ndarray):
            assert np.array_equal(x[name], y[name]), name
        else:
            assert x[name].equals(y[name]), name


def test_state_at_full_windows_gives_the_same_outputs_bit_for_bit() -> None:
    ticks = simulated(4_000, symbols=9, seed=5).combine_chunks()
    for workers in (1, 2):
        narrow, wide = Pipeline(_job(), workers), Pipeline(_job(), workers)
        wide.widen_windows()
        states = [st for lane in wide.lanes for st in lane.states if st.per_row]
        assert states and all(st.width == st._per_row_full for st in states)
        keyed = [st for lane in wide.lanes for st in lane.states if st.tiered]
        assert keyed and all(st.n_keys == 0 and st.capacity >= ROOM_KEYS for st in keyed)
        before = [st.width for lane in narrow.lanes for st in lane.states if st.per_row]
        assert min(before) < max(st._per_row_full for st in states)  # narrow ones widen later
        batches = ticks.to_batches(max_chunksize=100)  # the 20K live batches' size
        a = pa.Table.from_batches([narrow.process(b) for b in batches])
        b = pa.Table.from_batches([wide.process(b) for b in batches])
        _assert_same(a, b)
        assert all(len(st.tiers) == 1 for lane in wide.lanes for st in lane.states)
        narrow.close()
        wide.close()


def test_a_widened_state_saved_and_restored_goes_on_the_same() -> None:
    ticks = simulated(3_000, symbols=7, seed=6).combine_chunks()
    batches = ticks.to_batches(max_chunksize=250)
    whole = Pipeline(_job())
    expected = pa.Table.from_batches([whole.process(b) for b in batches])
    first = Pipeline(_job())
    first.widen_windows()
    head = [first.process(b) for b in batches[:4]]
    snapshot = gather(first)
    for widen in (False, True):
        second = Pipeline(_job(), 2)
        if widen:
            second.widen_windows()
        scatter(second, snapshot)
        tail = [second.process(b) for b in batches[4:]]
        _assert_same(expected, pa.Table.from_batches(head + tail))
        second.close()
