"""asof_join against pandas merge_asof on random inputs (ties, null keys and values,
interleaved keys), and its streaming contract: any split and interleaving of the two inputs,
and a save/restore anywhere, give the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickflow.engine.errors import KernelRuntimeError
from tickflow.engine.operators.testing import assert_tables_equal, bind, run_operator

US = 1_000_000
KEYS = ["BTC", "ETH", "SOL", None]


@st.composite
def frames(draw: st.DrawFn, prefix: str, min_rows: int = 0) -> pa.Table:
    n = draw(st.integers(min_rows, 30))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ts = np.cumsum(np.array(gaps, dtype=np.int64)) * US + 1_700_000_000 * US
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=n, max_size=n))
    values = draw(st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)),
                           min_size=n, max_size=n))
    counts = draw(st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=n, max_size=n))
    return pa.table({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "symbol": pa.array(keys, pa.string()),
                     "x": pa.array(values, pa.float64()),
                     f"{prefix}_count": pa.array(counts, pa.int64())})


@st.composite
def join_params(draw: st.DrawFn) -> dict:
    params = {"right": "right", "direction": draw(st.sampled_from(["backward", "forward",
                                                                   "nearest"])),
              "allow_exact_matches": draw(st.booleans())}
    tol = draw(st.one_of(st.none(), st.integers(0, 4)))
    if tol is not None:
        params["tolerance"] = f"{tol}s" if tol else "1us"
    return params


def pandas_asof(left: pa.Table, right: pa.Table, params: dict) -> pd.DataFrame:
    tol = params.get("tolerance")
    return pd.merge_asof(
        left.to_pandas(), right.to_pandas(), on="timestamp", by="symbol",
        direction=params["direction"], allow_exact_matches=params["allow_exact_matches"],
        tolerance=pd.Timedelta(tol) if tol else None, suffixes=("_x", "_y"))


def assert_same(got: pa.Table, expected: pd.DataFrame) -> None:
    frame = got.to_pandas()
    assert list(frame.columns) == list(expected.columns)
    assert len(frame) == len(expected)
    for col in frame.columns:
        a, b = frame[col], expected[col]
        if col in ("timestamp", "symbol"):
            assert a.astype(object).where(a.notna(), None).tolist() == \
                b.astype(object).where(b.notna(), None).tolist(), col
        else:
            np.testing.assert_array_equal(a.to_numpy(dtype=float, na_value=np.nan),
                                          b.to_numpy(dtype=float, na_value=np.nan),
                                          err_msg=col)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=frames("l", 1), right=frames("r", 1), params=join_params())
def test_equals_pandas_merge_asof(left: pa.Table, right: pa.Table, params: dict) -> None:
    got = run_operator("asof_join", {"left": left, "right": right}, params=params)
    assert_same(got, pandas_asof(left, right, params))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=frames("l"), right=frames("r"), params=join_params(), data=st.data())
def test_any_split_interleaving_and_restore_gives_the_same_rows(
        left: pa.Table, right: pa.Table, params: dict, data: st.DataObject) -> None:
    tables = {"left": left, "right": right}
    whole = run_operator("asof_join", tables, params=params)
    cuts = {p: data.draw(st.lists(st.integers(1, max(1, t.num_rows)), max_size=6), label=p)
            for p, t in tables.items()}
    schedule = data.draw(st.lists(st.sampled_from(["left", "right"]), max_size=14),
                         label="schedule")
    restore_at = data.draw(st.one_of(st.none(), st.integers(1, 8)), label="restore_at")
    cut = run_operator("asof_join", tables, params=params, chunks=cuts, schedule=schedule,
                       restore_at=restore_at)
    assert_tables_equal(cut, whole)


def _table(ts: list[int], keys: list[str | None], **cols: list) -> pa.Table:
    return pa.table({"timestamp": pa.array(np.array(ts, dtype=np.int64) * US,
                                           pa.timestamp("us", tz="UTC")),
                     "symbol": pa.array(keys, pa.string()), **cols})


def test_ties_take_the_last_right_row_backward_and_the_first_forward() -> None:
    left = _table([3, 4], ["a", "a"])
    right = _table([3, 3, 4, 4], ["a"] * 4, v=[1, 2, 3, 4])
    back = run_operator("asof_join", {"left": left, "right": right}, params={"right": "r"})
    assert back.column("v").to_pylist() == [2, 4]
    fwd = run_operator("asof_join", {"left": left, "right": right},
                       params={"right": "r", "direction": "forward"})
    assert fwd.column("v").to_pylist() == [1, 3]
    strict = run_operator("asof_join", {"left": left, "right": right},
                          params={"right": "r", "direction": "nearest",
                                  "allow_exact_matches": False})
    assert strict.column("v").to_pylist() == [3, 2]


def test_nearest_prefers_backward_on_equal_distance_and_nulls_match_nulls() -> None:
    left = _table([3, 5], ["a", None])
    right = _table([2, 4, 5], ["a", "a", None], v=[1, 2, 3])
    got = run_operator("asof_join", {"left": left, "right": right},
                       params={"right": "r", "direction": "nearest"})
    assert got.column("v").to_pylist() == [1, 3]


def test_backward_rows_leave_as_soon_as_the_right_stream_passes_them() -> None:
    bound = bind("asof_join", {"left": ["timestamp", "symbol"],
                               "right": ["timestamp", "symbol", "v"]}, params={"right": "r"})
    op = bound.make()
    op.bind({"left": _table([1], ["a"]).schema, "right": _table([1], ["a"], v=[1]).schema})
    assert op.push("left", _table([1, 2, 5], ["a", "a", "a"]).to_batches()[0]) == []
    out = op.push("right", _table([0, 3], ["a", "a"], v=[10, 30]).to_batches()[0])
    assert sum(b.num_rows for b in out) == 2  # t=1 and t=2 are final; t=5 waits
    assert op.advance("right", 6 * US)[0].column("v").to_pylist() == [30]


def test_unsorted_input_and_null_times_are_located_errors() -> None:
    left = _table([2, 1], ["a", "a"])
    right = _table([1], ["a"], v=[1])
    with pytest.raises(KernelRuntimeError, match=r"stream 'left' \(left\) is not in "
                                                 r"'timestamp' order: row 1"):
        run_operator("asof_join", {"left": left, "right": right}, params={"right": "r"})
    bad = pa.table({"timestamp": pa.array([None], pa.timestamp("us", tz="UTC")),
                    "symbol": ["a"], "v": [1]})
    with pytest.raises(KernelRuntimeError, match="null 'timestamp' at row 0 of stream 'right'"):
        run_operator("asof_join", {"left": left.slice(0, 1), "right": bad},
                     params={"right": "r"})


def test_long_streams_keep_only_the_right_rows_they_still_need() -> None:
    rng = np.random.default_rng(5)
    n = 300_000
    keys = rng.choice(["a", "b", "c"], n).tolist()
    left = _table(np.arange(n).tolist(), keys)
    right = _table(np.arange(n).tolist(), keys, v=np.arange(n))
    bound = bind("asof_join", {"left": left.schema.names, "right": right.schema.names},
                 params={"right": "r"})
    op = bound.make()
    op.bind({"left": left.schema, "right": right.schema})
    rows = 0
    for a in range(0, n, 5000):
        for b in op.push("right", right.slice(a, 5000).to_batches()[0]):
            rows += b.num_rows
        for b in op.push("left", left.slice(a, 5000).to_batches()[0]):
            rows += b.num_rows
        assert op.rts.shape[0] < 2 * 65_536
    rows += sum(b.num_rows for b in op.end("left") + op.end("right"))
    assert rows == n
