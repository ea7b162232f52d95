"""JSON encoding for the Kafka sinks: the text and keys the earlier encoder wrote, byte for byte.

Timestamps are formatted by Arrow's cast of a zone-less UTC timestamp (3x faster than
``strftime``) and string keys converted by Arrow at once; both must give what ``strftime`` and
``str(key).encode()`` gave, over the whole range of years, every unit and zone, and nulls.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.kafka.util import simulated
from tickflow.connectors.formats import row_encoder
from tickflow.connectors.tick_codec import encode_json_values, encode_tick_rows

FIRST = np.datetime64("0001-01-01T00:00:00", "us").astype(np.int64)
LAST = np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64)


def strftime_text(col: pa.Array) -> list[str | None]:
    """The earlier encoder's timestamp text (with its quotes), the reference."""
    text = pc.strftime(pc.cast(col, pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    return pc.fill_null(pc.binary_join_element_wise('"', text, '"', ""), "null").to_pylist()


def encoded_text(col: pa.Array) -> list[str]:
    values = encode_json_values(pa.table({"t": col}))
    return [v[len('{"t":'):-1] for v in values.to_pylist()]


@pytest.mark.parametrize(("unit", "scale"), [("us", 1), ("ms", 1_000), ("s", 1_000_000)])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", None])
def test_timestamps_are_the_text_strftime_wrote(unit: str, scale: int, tz: str | None) -> None:
    rng = np.random.default_rng(7)
    raw = np.concatenate([rng.integers(FIRST, LAST, 20_000), rng.integers(-10**13, 10**13, 5_000),
                          [FIRST, LAST, -1, 0, 1, 999_999, 1_000_000]]) // scale
    if tz is not None and tz != "UTC":  # room for the zone's offset at the range's ends
        raw = raw[(raw > FIRST // scale + 86_400_000_000 // scale)
                  & (raw < LAST // scale - 86_400_000_000 // scale)]
    col = pa.array(raw, pa.timestamp(unit, tz), mask=np.arange(len(raw)) % 97 == 0)
    assert encoded_text(col) == strftime_text(col)


def test_a_tick_value_keeps_its_text() -> None:
    ticks = simulated(50, symbols=2, seed=3)
    value = encode_tick_rows(ticks)[0][1]
    assert value.startswith(b'{"timestamp":"20') and b'Z","symbol":"' in value


@pytest.mark.parametrize("column", [
    pa.array(["BTC-USD", None, "é", ""]).dictionary_encode(),
    pa.array(["BTC-USD", None, "é", ""]),
    pa.array(["BTC-USD", None, "é", ""], pa.large_string()),
    pa.array([1, None, -5, 0]),
    pa.array([1.0, None, 2.5, -0.0]),
    pa.array([True, None, False, True]),
], ids=["dictionary", "string", "large_string", "int", "float", "bool"])
def test_keys_are_what_str_encoded(column: pa.Array) -> None:
    batch = pa.RecordBatch.from_arrays([column, pa.array([1.5] * len(column))], ["k", "x"])
    encode = row_encoder("json", "t", batch.schema, "k", None)
    assert [k for k, _ in encode(batch)] == [str(k).encode() for k in column.to_pylist()]
    if pa.types.is_dictionary(column.type) or pa.types.is_string(column.type):
        rows = encode_tick_rows(pa.table({"symbol": column, "price": [1.0] * len(column)}))
        assert [k for k, _ in rows] == [(k or "").encode() for k in column.to_pylist()]


def test_values_are_bytes_of_the_json_text() -> None:
    ticks = simulated(200, symbols=3, seed=2)
    encode = row_encoder("json", "t", ticks.schema, "symbol", None)
    batch = ticks.to_batches()[0]
    assert [v for _, v in encode(batch)] == \
        [v.encode() for v in encode_json_values(batch).to_pylist()]


def test_number_columns_formatted_together_keep_each_columns_text() -> None:
    """Columns of one type are formatted in one call and sliced back: each row's text is what
    its column alone gives (the single-column path), in the order of ``columns``."""
    rng = np.random.default_rng(5)
    n = 13
    floats = [rng.standard_normal(n) * 10.0 ** rng.integers(-8, 12, n) for _ in range(3)]
    floats[1][[2, 5]] = [np.nan, np.inf]
    columns = {
        "a": pa.array(floats[0], mask=np.arange(n) % 4 == 1), "k": pa.array(["X"] * n),
        "b": pa.array(floats[1]), "i": pa.array(rng.integers(-9, 9, n)),
        "c": pa.array(floats[2]), "f": pa.array(rng.random(n) > 0.5),
        "j": pa.array(rng.integers(0, 2, n).astype(np.int8)), "g": pa.array(rng.random(n) > 0.3),
        "m": pa.array(rng.integers(-9, 9, n), mask=np.arange(n) % 3 == 0),
    }
    batch = pa.RecordBatch.from_pydict(columns)
    order = ["c", "k", "m", "a", "g", "i", "b", "f", "j"]
    alone = {name: [v[len(name) + 4:-1] for v in
                    encode_json_values(pa.table({name: columns[name]})).to_pylist()]
             for name in order}
    expected = ["{" + ",".join(f'"{name}":{alone[name][row]}' for name in order) + "}"
                for row in range(n)]
    assert encode_json_values(batch, order).to_pylist() == expected


def test_a_dictionary_column_gives_the_text_of_its_strings() -> None:
    """A dictionary column is quoted from its own dictionary (not decoded first)."""
    plain = pa.array(["BTC-USD", None, "é", "", 'a"b\\', "BTC-USD"])
    for column in (plain.dictionary_encode(), plain.cast(pa.large_string()).dictionary_encode(),
                   pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 1]),
                                                  pa.array(["x", None]))):
        assert encode_json_values(pa.table({"s": column})).to_pylist() == \
            encode_json_values(pa.table({"s": column.cast(pa.string())})).to_pylist()
