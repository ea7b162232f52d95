"""KeyIndex: ids in order of first appearance, whatever the column's encoding and batching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.engine.keys import KeyIndex


def _reference(values: list[object]) -> list[int]:
    ids: dict[object, int] = {}
    return [ids.setdefault(v, len(ids)) for v in values]


def test_ids_follow_first_appearance_for_plain_dictionary_and_chunked_columns():
    rng = np.random.default_rng(7)
    values = [f"S{int(i)}" for i in rng.integers(0, 300, 5_000)]
    expected = _reference(values)
    for make in (pa.array, lambda v: pa.array(v).dictionary_encode(),
                 lambda v: pa.chunked_array([pa.array(v[:10]), pa.array(v[10:])])):
        keys = KeyIndex()
        got = np.concatenate([keys.encode(make(values[a:a + 700]))
                              for a in range(0, len(values), 700)])
        assert got.tolist() == expected
        assert keys.values == list(dict.fromkeys(values))


def test_morsels_of_one_parquet_dictionary_are_mapped_once(tmp_path):
    symbols = [f"K{i % 1_000}" for i in range(20_000)]
    pq.write_table(pa.table({"symbol": symbols}), tmp_path / "k.parquet", row_group_size=20_000)
    pf = pq.ParquetFile(tmp_path / "k.parquet", read_dictionary=["symbol"])
    keys = KeyIndex()
    got = [keys.encode(b.column(0)) for b in pf.iter_batches(batch_size=1_000)]
    assert np.concatenate(got).tolist() == _reference(symbols)
    assert len(keys._lookups) == 1  # twenty morsels, one dictionary, one mapping


def test_restoring_ids_drops_cached_lookups():
    keys = KeyIndex()
    column = pa.array(["a", "b", "c"]).dictionary_encode()
    assert keys.encode(column).tolist() == [0, 1, 2]
    keys.ids, keys.values = {"c": 0, "a": 1}, ["c", "a"]  # what a restore from a snapshot does
    assert keys.encode(column).tolist() == [1, 2, 0]
    assert keys.values == ["c", "a", "b"]


def test_nulls_form_their_own_key():
    keys = KeyIndex()
    assert keys.encode(pa.array(["a", None, "b"])).tolist() == [0, 2, 1]
    assert keys.encode(pa.array([None, "c", "a"])).tolist() == [2, 3, 0]
    assert keys.values == ["a", "b", None, "c"]


def test_a_dictionary_repeating_a_value_gives_one_id():
    column = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1]), pa.array(["x", "y", "x"]))
    keys = KeyIndex()
    assert keys.encode(column).tolist() == [0, 1, 0, 1]
    assert keys.values == ["x", "y"]


@pytest.mark.parametrize("values", [[3, 1, 3, 2], [b"a", b"b", b"a"]])
def test_non_string_keys(values):
    keys = KeyIndex()
    assert keys.encode(pa.array(values)).tolist() == _reference(values)


def test_a_dictionary_growing_morsel_by_morsel_maps_only_its_new_values(tmp_path):
    """Past a full dictionary page the Parquet reader's dictionary grows from morsel to
    morsel; each is mapped from the one before it plus its new tail."""
    rng = np.random.default_rng(3)
    symbols = [f"SYMBOL-{int(i):06d}" for i in rng.integers(0, 60_000, 40_000)]
    pq.write_table(pa.table({"symbol": symbols}), tmp_path / "k.parquet", row_group_size=40_000,
                   dictionary_pagesize_limit=64 << 10)
    pf = pq.ParquetFile(tmp_path / "k.parquet", read_dictionary=["symbol"])
    batches = list(pf.iter_batches(batch_size=8_000))
    sizes = [len(b.column(0).dictionary) for b in batches]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the input grows its dictionary
    keys = KeyIndex()
    mapped: list[int] = []
    real_map = keys._map
    keys._map = lambda d: (mapped.append(len(d)), real_map(d))[1]  # type: ignore[method-assign]
    got = [keys.encode(b.column(0)) for b in batches]
    assert np.concatenate(got).tolist() == _reference(symbols)
    assert keys.values == list(dict.fromkeys(symbols))
    assert sum(mapped) == sizes[-1]  # every dictionary value went through Python once
    # only the longest dictionary of the row group stays cached: its prefixes are not asked
    # for again, and each held its values and their ids
    assert [len(c) for c, _ in keys._lookups] == [sizes[-1]]


def test_cached_dictionaries_are_bounded_by_their_values(monkeypatch):
    """Dictionaries of many keys are not kept eight at a time (15 MB an index at 100,000
    keys); the newest is always kept, and a dropped one is mapped again, to the same ids."""
    import tickflow.engine.keys as keys_module

    monkeypatch.setattr(keys_module, "_CACHED_VALUES", 1_000)
    keys = KeyIndex()
    groups = [pa.array([f"K{(g * 7 + i) % 1_500}" for i in range(600)]).dictionary_encode()
              for g in range(4)]
    first = [keys.encode(g) for g in groups]
    assert [len(c) for c, _ in keys._lookups] == [600]  # 1,200 values would pass 1,000
    again = [keys.encode(g) for g in groups]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    values = [v.as_py() for g in groups for v in g.dictionary]
    assert np.concatenate(first).tolist() == _reference(values)
