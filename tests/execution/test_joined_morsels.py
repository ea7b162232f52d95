"""Source batches joined into bigger morsels once a job has many keys: same rows, same outputs,
and a checkpoint's position and quality mark are those after the joined batch's last part."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.runtime import driver as driver_module
from tickflow.engine.runtime import morsels
from tickflow.engine.runtime.driver import Driver
from tickflow.engine.runtime.morsels import joined
from tickflow.engine.runtime.pipeline import Pipeline

from .test_dictionary_keys import (  # noqa: F401 (ticks: a fixture)
    _checkpointed,
    _job,
    _plain_reference,
    _stopped_part_way,
    ticks,
)
from .test_local_executor import assert_tables_equal


def _dict_batch(indices: list[int], dictionary: list[str], x: list[float]) -> pa.RecordBatch:
    keys = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(dictionary))
    return pa.RecordBatch.from_arrays([keys, pa.array(x)], names=["symbol", "x"])


def test_batches_join_while_each_dictionary_extends_the_one_before():
    items = [
        (_dict_batch([0, 0], ["a"], [1.0, 2.0]), "p1", "m1"),
        (_dict_batch([1, 0], ["a", "b"], [3.0, 4.0]), "p2", "m2"),
        (_dict_batch([2], ["a", "b", "c"], [5.0]), None, "m3"),  # a stage's tail: no position
        (_dict_batch([0], ["z"], [6.0]), "p4", "m4"),  # a new row group's dictionary
        (_dict_batch([0, 0], ["z"], [7.0, 8.0]), "p5", "m5"),
        (_dict_batch([0, 0], ["z"], [9.0, 10.0]), "p6", "m6"),
    ]
    out = list(joined(iter(items), lambda: 5, lambda it: (it[0], it[1:]),
                      lambda b, rest: (b, *rest)))
    assert [b.num_rows for b, _, _ in out] == [5, 5]  # broken where the dictionary is new
    first, position, mark = out[0]
    assert first.column("symbol").to_pylist() == ["a", "a", "b", "a", "c"]
    assert first.column("x").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (position, mark) == ("p2", "m3")  # the last position given, the last mark
    assert out[1][1:] == ("p6", "m6")
    assert out[1][0].column("symbol").to_pylist() == ["z"] * 5
    assert sum(b.num_rows for b, _, _ in out) == sum(b.num_rows for b, _, _ in items)


def test_no_batch_is_joined_below_many_keys_or_past_the_target():
    batches = [pa.RecordBatch.from_arrays([pa.array([float(i)] * 3)], names=["x"])
               for i in range(5)]
    same = list(joined(iter(batches), lambda: 3, lambda b: (b, ()), lambda b, r: b))
    assert [b.num_rows for b in same] == [3] * 5
    pulled: list[int] = []

    def source():
        for b in batches:
            pulled.append(b.num_rows)
            yield b

    first = joined(source(), lambda: 3, lambda b: (b, ()), lambda b, r: b)
    assert next(first).num_rows == 3 and len(pulled) == 1  # a full morsel: nothing read ahead
    two = list(joined(iter(batches), lambda: 7, lambda b: (b, ()), lambda b, r: b))
    assert [b.num_rows for b in two] == [6, 6, 3]
    assert pa.Table.from_batches(two).column("x").to_pylist() == \
        pa.Table.from_batches(batches).column("x").to_pylist()


@pytest.fixture
def many_keys(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Join from the first key on, up to 4 morsels; returns the rows of each morsel run."""
    monkeypatch.setattr(morsels, "GROUP_MIN_KEYS", 1)
    monkeypatch.setattr(morsels, "ROWS_PER_KEY", 1 << 20)
    sizes: list[int] = []
    process = Pipeline.process

    def spy(self: Pipeline, batch: pa.RecordBatch) -> pa.RecordBatch:
        sizes.append(batch.num_rows)
        return process(self, batch)

    monkeypatch.setattr(Pipeline, "process", spy)
    return sizes


@pytest.mark.parametrize("workers", [1, 2])
def test_joined_morsels_give_the_same_outputs(tmp_path: Path, ticks: Path,  # noqa: F811
                                              many_keys: list[int], workers: int) -> None:
    out = tmp_path / "out.parquet"
    job = _job(tmp_path, ticks, out, 500)
    assert Driver(job, workers=workers, morsel_rows=500).run().rows == 15_000
    assert max(many_keys) == 2_000  # four morsels of 500 joined (row groups of 2,500)
    assert_tables_equal(_plain_reference(job, ticks),
                        pq.read_table(out).replace_schema_metadata(None))


def test_a_run_of_joined_morsels_stopped_and_resumed_writes_the_same(
        tmp_path: Path, ticks: Path, many_keys: list[int]) -> None:  # noqa: F811
    from tickflow.engine.state.recovery import open_checkpointer

    out = tmp_path / "out.parquet"
    path = _checkpointed(tmp_path, ticks, out, 500, "rocksdb")
    _stopped_part_way(path, 500)
    assert max(many_keys) > 500  # joined
    job = compile_job(load_job(path))
    Driver(job, morsel_rows=500, checkpointer=open_checkpointer(job)).run()
    assert_tables_equal(_plain_reference(job, ticks),
                        pq.read_table(out).replace_schema_metadata(None))


@pytest.mark.parametrize(("morsel_mb", "largest"), [(1, 1_000), (2, 2_000)])
def test_executor_morsel_mb_bounds_a_joined_morsel(
        tmp_path: Path, ticks: Path, many_keys: list[int], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        morsel_mb: int, largest: int) -> None:
    monkeypatch.setattr(driver_module, "row_bytes", lambda schema: 1_024)  # 1,024 rows a MB
    out = tmp_path / "out.parquet"
    _job(tmp_path, ticks, out, 500)
    path = tmp_path / "job.yaml"
    path.write_text(path.read_text() + f"  morsel_mb: {morsel_mb}\n")
    job = compile_job(load_job(path))
    assert Driver(job, morsel_rows=500).run().rows == 15_000
    assert max(many_keys) == largest  # 1 MB: two batches of 500; 2 MB: four (the row cap)
    assert_tables_equal(_plain_reference(job, ticks),
                        pq.read_table(out).replace_schema_metadata(None))
