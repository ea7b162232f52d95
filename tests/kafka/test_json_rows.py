"""The per-row JSON path for small writes gives the Arrow encoder's bytes, value for value.

A hostile corpus: NaN, infinities and nulls, -0.0, the largest and smallest floats, every
decimal exponent around Arrow's switch to exponent notation, unicode and escapes in strings,
dictionary columns, timestamps of every unit and zone over years 1-9999.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tickflow.connectors.json_rows import arrow_float_text, encode_json_rows_small
from tickflow.connectors.tick_codec import (
    SMALL_ROWS,
    encode_json_bytes,
    encode_json_values,
    key_bytes,
)

FIRST = np.datetime64("0001-01-01T00:00:00", "us").astype(np.int64)
LAST = np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64)


def arrow_bytes(batch: pa.RecordBatch | pa.Table, names: list[str] | None = None) -> list[bytes]:
    return encode_json_values(batch, names).cast(pa.binary()).to_pylist()


def hostile_floats() -> np.ndarray:
    rng = np.random.default_rng(11)
    special = [0.0, -0.0, 1.0, -1.0, 0.1, 100.0, 1e15, 1e16, 1e21, 1e22, 2.0**53, 2.0**63,
               5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
               -1.7976931348623157e308, 9999999999.0, 9999999999.5, 1e10, 1234567890.5,
               0.000001, 0.0000012345, 1e-7, 9.999999e-7, 0.0001, 1e-5, 123456789012345678.0,
               np.nan, np.inf, -np.inf, 0.30000000000000004, 1 / 3, 65536.0, 1e100]
    decades = np.array([m * 10.0**e for e in range(-12, 18) for m in (1.0, 9.99, 1.5, 99.5)])
    wide = rng.standard_normal(20_000) * 10.0 ** rng.integers(-320, 300, 20_000)
    bits = rng.integers(0, 2**63 - 1, 20_000, dtype=np.int64).view(np.float64)  # any bits
    return np.concatenate([special, decades, -decades, np.nextafter(decades, np.inf), wide, bits])


def test_float_text_is_arrows_for_every_kind_of_double() -> None:
    x = hostile_floats()
    x = x[np.isfinite(x)]
    expected = pa.array(x).cast(pa.string()).to_pylist()
    assert [arrow_float_text(float(v)) for v in x] == expected


def test_small_batches_give_the_arrow_bytes_on_a_hostile_corpus() -> None:
    rng = np.random.default_rng(3)
    floats = hostile_floats()
    stamps = np.concatenate([rng.integers(FIRST, LAST, 2_000), [FIRST, LAST, -1, 0, 1]])
    symbols = ["BTC-USD", "é", "日本", 'a"b\\', "tab\there", "\u2028", "", "\x00", "🚀"]
    n = 7
    for start in range(0, 1_400, n):
        mask = rng.random(n) < 0.2
        row_floats = floats[rng.integers(0, len(floats), n)]
        columns = {
            "timestamp": pa.array(stamps[rng.integers(0, len(stamps), n)],
                                  pa.timestamp("us", "UTC"), mask=mask),
            "symbol": pa.array([symbols[i] for i in rng.integers(0, len(symbols), n)],
                               mask=rng.random(n) < 0.1).dictionary_encode(),
            "name": pa.array([symbols[i] for i in rng.integers(0, len(symbols), n)],
                             pa.large_string()),
            "price": pa.array(row_floats, mask=rng.random(n) < 0.2),
            "zscore": pa.array(floats[rng.integers(0, len(floats), n)]),
            "buy": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.2),
            "count": pa.array(rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)),
            "flag": pa.array(rng.integers(0, 2, n).astype(np.int8)),
            "big": pa.array(rng.integers(0, 2**64 - 1, n, dtype=np.uint64)),
            "none": pa.nulls(n),
            "ms": pa.array(stamps[:n] // 1000, pa.timestamp("ms", "America/New_York")),
            "s": pa.array(stamps[-n:] // 10**6, pa.timestamp("s")),
        }
        batch = pa.RecordBatch.from_pydict(columns)
        names = list(columns) if start % 2 else ["price", "symbol", "timestamp", "buy"]
        assert encode_json_rows_small(batch, names) == arrow_bytes(batch, names), start


@pytest.mark.parametrize("column", [
    pa.array([0.1, 1e20], pa.float32()),
    pa.array([1_000, 2_000], pa.timestamp("ns")),
    pa.array([1, 2]).dictionary_encode(),
    pa.array([1.5, 2.5]).cast(pa.decimal128(5, 2)),
], ids=["float32", "ns", "int_dictionary", "decimal"])
def test_other_types_take_the_arrow_path(column: pa.Array) -> None:
    batch = pa.RecordBatch.from_arrays([column, pa.array([1.0, 2.0])], ["c", "x"])
    assert encode_json_rows_small(batch, ["c", "x"]) is None
    assert encode_json_bytes(batch) == arrow_bytes(batch)


def test_a_timestamp_arrow_formats_past_year_9999_takes_the_arrow_path() -> None:
    batch = pa.table({"t": pa.array(np.array([LAST + 1]), pa.timestamp("us"))})
    assert encode_json_rows_small(batch, ["t"]) is None
    assert encode_json_bytes(batch) == arrow_bytes(batch)


def test_the_path_is_chosen_by_size_and_both_agree() -> None:
    n = SMALL_ROWS * 2
    batch = pa.table({"t": pa.array(np.arange(n) * 1_000_003, pa.timestamp("us", "UTC")),
                      "x": np.linspace(-1e12, 1e-9, n), "k": ["é"] * n})
    assert encode_json_bytes(batch) == arrow_bytes(batch)
    small = batch.slice(0, SMALL_ROWS - 1)
    assert encode_json_bytes(small) == arrow_bytes(small)
    assert encode_json_bytes(batch, []) == arrow_bytes(batch, [])
    assert encode_json_bytes(small.select([])) == [b"{}"] * (SMALL_ROWS - 1)


@pytest.mark.parametrize("null", ["None", ""])
def test_small_keys_are_the_arrow_paths_bytes(null: str) -> None:
    words = ["BTC-USD", None, "é", "", 'a"b\\', "🚀", "BTC-USD"]
    big = SMALL_ROWS * 3 // len(words) + 1
    columns = [pa.array(words), pa.array(words, pa.large_string()),
               pa.array(words).dictionary_encode(),
               pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 1, 2]),
                                              pa.array(["x", None, "ü"])),
               pa.chunked_array([pa.array(words[:3]), pa.array(words[3:])])]
    for col in columns:
        small = key_bytes(col, null)
        assert len(col) < SMALL_ROWS
        long = pa.chunked_array([col] * big) if isinstance(col, pa.Array) else \
            pa.chunked_array(col.chunks * big)
        assert small == key_bytes(long, null)[:len(col)]  # the Arrow path's
        assert small == [null.encode() if v is None else v.encode() for v in col.to_pylist()]


def test_sliced_columns_give_the_arrow_bytes() -> None:
    """Columns that start past their buffers' beginning (a slice): each read from its offset."""
    n = 40
    rng = np.random.default_rng(9)
    words = ["BTC-USD", "é", "日本", 'a"b\\', "", "🚀"]
    table = pa.table({
        "t": pa.array(rng.integers(0, 2 * 10**15, n), pa.timestamp("us", "UTC")),
        "s": pa.array([words[i] for i in rng.integers(0, len(words), n)]),
        "l": pa.array([words[i] for i in rng.integers(0, len(words), n)], pa.large_string()),
        "d": pa.array([words[i] for i in rng.integers(0, len(words), n)]).dictionary_encode(),
        "x": rng.standard_normal(n) * 1e3, "i": pa.array(rng.integers(-99, 99, n).astype(np.int16)),
        "b": pa.array(rng.random(n) < 0.5),
    })
    for start, length in ((1, 5), (3, 20), (17, 23), (0, 1)):
        part = table.slice(start, length)
        assert encode_json_rows_small(part, part.column_names) == arrow_bytes(part)
        batch = table.combine_chunks().to_batches()[0].slice(start, length)
        assert encode_json_rows_small(batch, batch.schema.names) == arrow_bytes(batch)
