"""The ticks topic's wire format: round trip, numbers as strings, malformed values."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from tests.kafka.util import simulated
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.tick_codec import (
    decode_tick_values,
    encode_json_values,
    encode_tick_rows,
    kept_indices,
)

GOOD = {"timestamp": "2026-08-09T12:00:00.123456Z", "symbol": "BTC-USD", "exchange": "coinbase",
        "price": 60000.5, "best_bid": 60000.0, "best_ask": 60001.0, "best_bid_size": 0.5,
        "best_ask_size": 0.25, "last_size": None, "volume_24h": 1234.5, "sequence": 123}


@pytest.fixture(scope="module")
def ticks() -> pa.Table:
    return simulated(3_000, symbols=3, seed=11)


def test_round_trip_is_exact(ticks: pa.Table) -> None:
    pairs = encode_tick_rows(ticks)
    assert [k.decode() for k, _ in pairs] == ticks.column("symbol").to_pylist()
    batch, rejected = decode_tick_values([v for _, v in pairs])
    assert rejected == []
    assert batch.schema == CANONICAL_TICK_SCHEMA
    assert pa.Table.from_batches([batch]).equals(ticks.cast(CANONICAL_TICK_SCHEMA))


def test_wire_value_has_the_canonical_fields() -> None:
    batch, _ = decode_tick_values([json.dumps(GOOD).encode()])
    value = json.loads(encode_tick_rows(batch)[0][1])
    assert value == GOOD


def test_numbers_sent_as_strings_are_decoded() -> None:
    as_strings = {**GOOD, "price": "60000.5", "best_bid": "60000", "sequence": "123",
                  "volume_24h": "1.2345e3"}
    batch, rejected = decode_tick_values([json.dumps(GOOD).encode(),
                                          json.dumps(as_strings).encode()])
    assert rejected == []
    rows = batch.to_pylist()
    assert rows[0] == rows[1]
    assert rows[1]["price"] == 60000.5 and rows[1]["sequence"] == 123


def test_nan_and_infinity_are_written_as_null() -> None:
    batch = pa.RecordBatch.from_pylist(
        [{**decode_tick_values([json.dumps(GOOD).encode()])[0].to_pylist()[0],
          "price": math.nan, "best_bid": math.inf}], schema=CANONICAL_TICK_SCHEMA)
    value = json.loads(encode_json_values(batch).to_pylist()[0])
    assert value["price"] is None and value["best_bid"] is None


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json at all", "malformed_json"),
    (b'{"timestamp": "2026-08-09T12:00:00Z", "symbol": "A"', "malformed_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (json.dumps({**GOOD, "timestamp": None}).encode(), "missing_timestamp"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "symbol"}).encode(), "missing_symbol"),
    (json.dumps({**GOOD, "timestamp": "yesterday"}).encode(), "bad_timestamp"),
    (json.dumps({**GOOD, "price": "sixty thousand"}).encode(), "bad_price"),
    (json.dumps({**GOOD, "sequence": "12.5"}).encode(), "bad_sequence"),
])
def test_malformed_values_are_isolated_with_a_reason(raw: bytes, reason: str) -> None:
    good = [json.dumps({**GOOD, "sequence": i}).encode() for i in range(50)]
    values = [*good[:20], raw, *good[20:]]
    batch, rejected = decode_tick_values(values)
    assert rejected == [(20, reason)]
    assert batch.column("sequence").to_pylist() == list(range(50))  # order kept
    assert list(kept_indices(len(values), rejected)) == [*range(20), *range(21, 51)]


def test_several_bad_values_in_one_batch() -> None:
    values = [json.dumps({**GOOD, "sequence": i}).encode() for i in range(1000)]
    for i in (3, 500, 999):
        values[i] = b"{broken"
    values[10] = json.dumps({**GOOD, "price": "1.5", "sequence": 10}).encode()
    batch, rejected = decode_tick_values(values)
    assert rejected == [(3, "malformed_json"), (500, "malformed_json"), (999, "malformed_json")]
    assert batch.num_rows == 997
    assert batch.column("price")[9].as_py() == 1.5  # row 10 once row 3 is out


@pytest.mark.parametrize("fields", [
    {"symbol": ""},
    {"timestamp": "2026-08-09T12:00:00"},  # no zone: UTC
    {"timestamp": "2026-08-09T12:00:00.123456789Z"},
])
def test_a_message_fares_the_same_in_arrows_reader_and_explained_alone(fields) -> None:
    """A clean batch goes through Arrow's reader; a value the reader refuses (here: a field
    given twice, the last one counts) is explained on its own. Either way the same value is
    kept, or refused for the same reason."""
    plain = json.dumps({**GOOD, **fields, "price": 2.0}).encode()
    twice = json.dumps({**GOOD, **fields, "price": 1.0}).encode()[:-1] + b', "price": 2.0}'
    read, explained = decode_tick_values([plain]), decode_tick_values([twice])
    assert read[1] == explained[1]
    assert read[0].to_pylist() == explained[0].to_pylist()
