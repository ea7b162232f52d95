"""The Avro decoder's compiled batch path (avro_fast.py) gives what the fastavro path gives:
the same ticks for clean batches of every supported writer schema, and for anything else it
steps aside so that the fastavro path rejects the same messages with the same reasons."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_writer

from tests.kafka.schema_registry_server import SchemaRegistryServer
from tests.kafka.util import simulated
from tickflow.connectors import avro_codec
from tickflow.connectors.avro_codec import AvroTickDecoder, AvroTickEncoder
from tickflow.connectors.avro_fast import decode_batch, plan_for
from tickflow.connectors.schema_registry import registry_client

NULLABLE = ["null", "double"]


def _schema(fields: list[tuple[str, object]]) -> dict:
    return {"type": "record", "name": "T", "namespace": "t",
            "fields": [{"name": n, "type": t} for n, t in fields]}


TICK_FIELDS = [("timestamp", {"type": "long", "logicalType": "timestamp-micros"}),
               ("symbol", "string"), ("exchange", ["null", "string"]),
               ("price", NULLABLE), ("best_bid", NULLABLE), ("best_ask", NULLABLE),
               ("best_bid_size", NULLABLE), ("best_ask_size", NULLABLE),
               ("last_size", NULLABLE), ("volume_24h", NULLABLE), ("sequence", ["null", "long"])]


def _values(registry: str, subject: str, schema: dict, records: list[dict]) -> list[bytes]:
    from confluent_kafka.schema_registry import Schema

    sid = registry_client(registry).register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    parsed = parse_schema(schema)
    out = []
    for record in records:
        body = io.BytesIO()
        schemaless_writer(body, parsed, record)
        out.append(b"\0" + sid.to_bytes(4, "big") + body.getvalue())
    return out


def _both(registry: str, values: list[bytes]) -> tuple[tuple, tuple]:
    """(the decoder's result, the fastavro path's result) for ``values``."""
    fast = AvroTickDecoder(registry).decode(values)
    keep = avro_codec.decode_batch
    avro_codec.decode_batch = lambda values, plan_of: None
    try:
        slow = AvroTickDecoder(registry).decode(values)
    finally:
        avro_codec.decode_batch = keep
    return fast, slow


def _same(a: tuple, b: tuple) -> None:
    assert a[0].equals(b[0]), (a[0].to_pylist()[:3], b[0].to_pylist()[:3])
    assert a[1] == b[1]
    assert np.array_equal(a[2], b[2])


def _record(i: int, **over: object) -> dict:
    row = {"timestamp": 1_767_225_600_000_000 + i, "symbol": "BTC-USD", "exchange": "sim",
           "price": 100.0 + i, "best_bid": 99.5, "best_ask": 100.5, "best_bid_size": 1.0,
           "best_ask_size": 2.0, "last_size": None, "volume_24h": 5.0, "sequence": i}
    row.update(over)
    return row


@pytest.fixture(scope="module")
def registry() -> str:
    with SchemaRegistryServer() as server:
        yield server.url


def test_clean_batches_of_the_sinks_schemas_take_the_fast_path(registry: str) -> None:
    ticks = simulated(500, symbols=4, seed=5)
    repo = [v for _, v in AvroTickEncoder(registry, "f1").encode_rows(ticks, "symbol")]
    sink = avro_codec.avro_row_encoder(registry, "f2", ticks.schema, "symbol", None)
    derived = [v for _, v in sink(ticks.to_batches()[0])]
    for values in (repo, derived):
        assert decode_batch(values, AvroTickDecoder(registry)._plan) is not None
        fast, slow = _both(registry, values)
        _same(fast, slow)
        assert fast[0].num_rows == 500 and fast[1] == []


def test_nulls_odd_numbers_unicode_millis_and_floats_agree(registry: str) -> None:
    records = [_record(0, exchange=None, price=None, sequence=None),
               _record(1, price=math.inf, best_bid=-0.0, best_ask=float("nan")),
               _record(2, symbol="ÉTH-€", exchange="", volume_24h=1e308),
               _record(3, sequence=-(2**62), last_size=3.5)]
    values = _values(registry, "f3", _schema(TICK_FIELDS), records)
    fast, slow = _both(registry, values)
    assert decode_batch(values, AvroTickDecoder(registry)._plan) is not None
    # NaN != NaN: compare the rows with NaN as text
    assert str(fast[0].to_pylist()) == str(slow[0].to_pylist()) and fast[1] == slow[1] == []
    millis = [(n, {"type": "long", "logicalType": "timestamp-millis"} if n == "timestamp"
               else "float" if n == "price" else t) for n, t in TICK_FIELDS]
    extra = [*millis, ("note", ["string", "null"]), ("flag", "boolean"), ("n", "int")]
    rows = [{**_record(i, timestamp=1_767_225_600_123 + i, price=1.5 * i), "note": "x",
             "flag": i % 2 == 0, "n": -i} for i in range(5)]
    values = _values(registry, "f4", _schema(extra), rows)
    assert decode_batch(values, AvroTickDecoder(registry)._plan) is not None
    _same(*_both(registry, values))


def _corrupt(values: list[bytes]) -> dict[str, list[bytes]]:
    v = values
    symbol_end = v[1].index(b"BTC-USD") + len(b"BTC-USD")  # then the exchange's union branch
    return {
        "truncated": [v[0], v[1][:-1], v[2]],
        "not framed": [v[0], b"\1" + v[1][1:], v[2]],
        "too short": [v[0], v[1][:4], v[2]],
        "unknown id": [v[0], b"\0\0\0\x03\xe7" + v[1][5:], v[2]],
        "a bad union branch": [v[0], v[1][:symbol_end] + b"\x04" + v[1][symbol_end + 1:],
                               v[2]],
        "empty": [v[0], b"", v[2]],
    }


def test_hostile_batches_step_aside_and_get_the_same_verdicts(registry: str) -> None:
    clean = _values(registry, "f5", _schema(TICK_FIELDS), [_record(i) for i in range(3)])
    for what, values in _corrupt(clean).items():
        assert decode_batch(values, AvroTickDecoder(registry)._plan) is None, what
        fast, slow = _both(registry, values)
        _same(fast, slow)
        assert fast[1] and fast[0].num_rows == 2, what
    # a byte after the record: fastavro reads the record and ignores it, and so does the
    # decoder (the fast path only steps aside)
    extra = [clean[0], clean[1] + b"\0", clean[2]]
    assert decode_batch(extra, AvroTickDecoder(registry)._plan) is None
    fast, slow = _both(registry, extra)
    _same(fast, slow)
    assert fast[0].num_rows == 3
    # invalid UTF-8 in a symbol, an empty or null symbol: fastavro's verdicts
    bad_utf8 = [clean[0], clean[1].replace(b"BTC-USD", b"BTC-\xff\xfeD"), clean[2]]
    nullable = [(n, ["null", "string"] if n == "symbol" else t) for n, t in TICK_FIELDS]
    for values in (bad_utf8,
                   _values(registry, "f6", _schema(TICK_FIELDS), [_record(0, symbol="")]),
                   _values(registry, "f7", _schema(nullable), [_record(0, symbol=None)])):
        assert decode_batch(values, AvroTickDecoder(registry)._plan) is None
        fast, slow = _both(registry, values)
        _same(fast, slow)
        assert fast[1]
    # two writer schemas in one batch: the fastavro path (which reads both)
    other = _values(registry, "f8", _schema(TICK_FIELDS[:2]), [_record(9)])
    mixed = [clean[0], other[0]]
    assert decode_batch(mixed, AvroTickDecoder(registry)._plan) is None
    _same(*_both(registry, mixed))


def test_only_flat_records_of_plain_types_get_a_plan() -> None:
    assert plan_for(_schema(TICK_FIELDS)) is not None
    for kind in ({"type": "array", "items": "long"}, ["null", "long", "string"],
                 {"type": "bytes", "logicalType": "decimal", "precision": 4}, "bytes",
                 {"type": "int", "logicalType": "date"}):
        assert plan_for(_schema([*TICK_FIELDS, ("x", kind)])) is None, kind
    assert plan_for({"type": "enum", "name": "E", "symbols": ["A"]}) is None


def test_a_timestamp_fastavro_cannot_read_is_not_taken(registry: str) -> None:
    values = _values(registry, "f9", _schema(TICK_FIELDS),
                     [_record(0), _record(1, timestamp=2**62)])
    assert decode_batch(values, AvroTickDecoder(registry)._plan) is None
    fast, slow = _both(registry, values)
    _same(fast, slow)
    assert fast[0].num_rows == 1 and fast[1] == [(1, "malformed_avro")]
