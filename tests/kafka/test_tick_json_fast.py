"""The msgspec fast path of the JSON tick decoder gives the Arrow path's verdicts, exactly.

``decode_tick_values`` tries ``tick_json_fast.decode_clean`` first and falls back to the Arrow
reader with bisection (``decode_tick_values_arrow``, the decoder before the fast path). Both
must return the same rows (bit for bit: NaN, -0.0) and the same ``(index, reason)`` list on a
hostile corpus holding every reason, on generated ticks whose fields may be anything, and on
simulated ticks, which must take the fast path.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.kafka.util import simulated
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.tick_codec import (
    decode_tick_values,
    decode_tick_values_arrow,
    encode_tick_rows,
)
from tickflow.connectors.tick_json_fast import decode_clean

GOOD = {"timestamp": "2026-08-09T12:00:00.123456Z", "symbol": "BTC-USD", "exchange": "coinbase",
        "price": 60000.5, "best_bid": 60000.0, "best_ask": 60001.0, "best_bid_size": 0.5,
        "best_ask_size": 0.25, "last_size": None, "volume_24h": 1234.5, "sequence": 123}
REQUIRED = ("timestamp", "symbol")
NUMERIC = ("price", "best_bid", "best_ask", "best_bid_size", "best_ask_size", "last_size",
           "volume_24h")


def tick(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def raw_tick(**fields: bytes) -> bytes:
    """A tick with some fields' JSON text given as is (what json.dumps cannot write)."""
    body = [f'"{k}":{json.dumps(v)}'.encode() for k, v in GOOD.items() if k not in fields]
    return b"{" + b",".join(body + [f'"{k}":'.encode() + v for k, v in fields.items()]) + b"}"


def text_tick(**fields: Any) -> bytes:
    """A tick with every number sent as a string, as Coinbase sends them."""
    obj = {**GOOD, **fields}
    return json.dumps({k: str(v) if k in (*NUMERIC, "sequence") and type(v) in (int, float)
                       else v for k, v in obj.items()}).encode()


# (value, what the Arrow path says of it alone: a reason, or "" when it is a row)
HOSTILE: list[tuple[bytes, str]] = [
    (b"not json at all", "malformed_json"),
    (b'{"timestamp": "2026-08-09T12:00:00Z", "symbol": "A"', "malformed_json"),
    (b"", "malformed_json"),
    (b"   ", "malformed_json"),
    (b"null", "not_an_object"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'"text"', "not_an_object"),
    (b"[" * 5000 + b"]" * 5000, "too_deep"),
    (tick(timestamp=None), "missing_timestamp"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "timestamp"}).encode(),
     "missing_timestamp"),
    (tick(symbol=None), "missing_symbol"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "symbol"}).encode(), "missing_symbol"),
    (tick(symbol=7), "bad_symbol"),
    (tick(timestamp="yesterday"), "bad_timestamp"),
    (tick(timestamp=1786000000), "bad_timestamp"),
    (tick(timestamp="2026-08-09Z"), "bad_timestamp"),
    *[(tick(**{name: "sixty"}), f"bad_{name}") for name in NUMERIC],
    *[(tick(**{name: [1]}), f"bad_{name}") for name in NUMERIC],
    (tick(sequence="12.5"), "bad_sequence"),
    (tick(sequence=12.5), "bad_sequence"),
    (tick(sequence=2**64), "bad_sequence"),
    (raw_tick(sequence=b"1" + b"0" * 30), "bad_sequence"),
    (raw_tick(price=b"9" * 400), ""),  # Arrow reads it as inf
    (raw_tick(price=b"1e400"), ""),  # too big for Arrow's parser; json.loads: inf
    (raw_tick(price=b"NaN"), ""),  # Arrow's reader takes NaN
    (tick(price="1."), "malformed_json"),  # unquoted, "1." is not JSON
    # rows, each by the path that handles it: the fast path must leave them alone or agree
    (tick(price="60000.5", sequence="123"), ""),  # numbers as strings (Coinbase)
    (tick(price="1e-3", best_bid="-0", volume_24h="1.5E+3"), ""),
    (text_tick(), ""),
    (text_tick(price="1e-3", best_bid="-0", volume_24h="1.5E+3", sequence="-0"), ""),
    (text_tick(price="1.", sequence=5), "malformed_json"),
    (text_tick(price="1e400"), ""),
    (text_tick(price="nan"), ""),
    (text_tick(sequence="9" * 19), "bad_sequence"),
    (text_tick(sequence="12.0"), ""),
    (text_tick(best_ask=7.5), ""),  # one column numbers, the others strings
    (text_tick()[:-1] + b', "best_ask": "-0"}', ""),  # twice: json.loads reads it as 0
    (tick(price=" 1.5"), ""),  # json.loads and float()
    (tick(price="nan"), ""),
    (tick(price=True), ""),  # NaN, by the Arrow path's bisection
    (tick(sequence=1.0), ""),
    (tick(sequence=2**60), ""),
    (tick(sequence=-(2**63)), ""),
    (tick(symbol=""), "missing_symbol"),
    (tick(exchange=5), ""),
    (tick(exchange=None, last_size=None), ""),
    (tick(timestamp="2026-08-09T12:00:00.123456789Z"), ""),  # truncated to microseconds
    (tick(timestamp="2026-08-09T12:00:00.1234567Z"), ""),
    (tick(timestamp="2026-08-09T12:00:00"), ""),  # no zone: Arrow's reader takes it as UTC
    (tick(timestamp="2026-08-09 12:00:00+01:00"), ""),
    (tick(timestamp="2026-08-09T12:00:00+0100"), ""),
    (tick(timestamp="2026-08-09T12:00Z"), ""),
    (tick(extra={"nested": [1, {"a": None}]}, more="x"), ""),
    (tick(price=-0.0, best_bid=1e-320, best_ask=1.7976931348623157e308), ""),
    (raw_tick(price=b"-0"), ""),  # Arrow: -0.0; msgspec reads an integer 0
    (raw_tick(price=b"-0 ", best_bid=b"0", sequence=b"-0"), ""),
    (raw_tick(best_bid=b"0", note=b'"x-0}"'), ""),
    # a field twice: Arrow's reader refuses the batch, json.loads takes the last
    (tick()[:-1] + b', "price": 2}', ""),
    (b'{"symbol":"A","timestamp":"2026-08-09T12:00:00Z","symbol":"B"}', ""),
    (tick(symbol="")[:-1] + b', "price": 2}', "missing_symbol"),
    (tick(sequence=2**60 + 1)[:-1] + b', "price": 2}', ""),
    (raw_tick(note=b'"\xff"'), ""),  # invalid UTF-8 in a field nobody reads
    (raw_tick(note=b'"\\ud800"'), ""),  # a lone surrogate: json.loads takes it
    (b" " + tick(), ""),
    (tick() + b" ", ""),
    (tick() + b"\r", ""),
    (tick() + b"\n", ""),
    (tick() + b"\n" + tick(), "malformed_json"),
    (tick() + b"\x00", "malformed_json"),
    (tick().replace(b'"BTC-USD"', b'"BTC\tUSD"'), "malformed_json"),
]


def canonical_rows(batch: pa.RecordBatch) -> list[list[Any]]:
    """Rows with floats as their repr: NaN equals NaN and -0.0 differs from 0.0."""
    return [[repr(v) if isinstance(v, float) else v for v in row.values()]
            for row in batch.to_pylist()]


def assert_same(values: list[bytes]) -> tuple[pa.RecordBatch, list[tuple[int, str]]]:
    batch, rejected = decode_tick_values(values)
    expected, expected_rejected = decode_tick_values_arrow(values)
    assert batch.schema == CANONICAL_TICK_SCHEMA
    assert rejected == expected_rejected
    assert canonical_rows(batch) == canonical_rows(expected)
    return batch, rejected


def test_the_corpus_holds_every_reason() -> None:
    reasons = {reason for _, reason in HOSTILE}
    assert {"malformed_json", "not_an_object", "too_deep", "missing_timestamp",
            "missing_symbol", "bad_symbol", "bad_timestamp", "bad_sequence",
            *(f"bad_{name}" for name in NUMERIC)} <= reasons


@pytest.mark.parametrize(("raw", "reason"), HOSTILE)
def test_a_hostile_value_alone(raw: bytes, reason: str) -> None:
    batch, rejected = assert_same([raw])
    assert rejected == ([(0, reason)] if reason else [])
    assert batch.num_rows == (0 if reason else 1)


@pytest.mark.parametrize(("raw", "reason"), HOSTILE)
def test_a_hostile_value_among_clean_ticks(raw: bytes, reason: str) -> None:
    good = [tick(sequence=i) for i in range(40)]
    values = [*good[:17], raw, *good[17:]]
    batch, rejected = assert_same(values)
    if reason:
        assert rejected == [(17, reason)]
    assert batch.num_rows + len(rejected) == len(values)


def test_the_whole_corpus_in_one_batch() -> None:
    values = [tick(sequence=i) if i % 3 else raw for i, (raw, _) in enumerate(HOSTILE * 3)]
    _, rejected = assert_same(values)
    assert rejected


def test_simulated_ticks_take_the_fast_path_and_round_trip() -> None:
    ticks = simulated(5_000, symbols=7, seed=5).cast(CANONICAL_TICK_SCHEMA)
    values = [v for _, v in encode_tick_rows(ticks)]
    fast = decode_clean(values)
    assert fast is not None
    batch, rejected = assert_same(values)
    assert rejected == []
    assert pa.Table.from_batches([fast]).equals(ticks)
    assert pa.Table.from_batches([batch]).equals(ticks)


def test_nanosecond_timestamps_take_the_fast_path_truncated() -> None:
    values = [tick(timestamp=f"2026-08-09T12:00:00.123456{i % 10}89Z", sequence=i)
              for i in range(100)]
    assert decode_clean(values) is not None
    batch, _ = assert_same(values)
    assert batch.column("timestamp")[7].as_py().microsecond == 123456


def test_a_batch_the_fast_path_leaves_alone_still_decodes() -> None:
    values = [tick(sequence=i) for i in range(100)]
    values[50] = tick(price="1.5", sequence=50)
    assert decode_clean(values) is None
    batch, rejected = assert_same(values)
    assert rejected == [] and batch.column("price")[50].as_py() == 1.5


# ---------------------------------------------------------------------------- generated

timestamps = st.one_of(
    st.builds(lambda d, h, frac, sep, zone: f"2026-08-{d:02d}{sep}{h:02d}:30:15{frac}{zone}",
              st.integers(1, 28), st.integers(0, 23),
              st.sampled_from(["", ".5", ".123", ".123456", ".1234567", ".123456789"]),
              st.sampled_from(["T", " "]),
              st.sampled_from(["Z", "+00:00", "-05:30", "+0100", "", "z", "+01"])),
    st.sampled_from(["", "2026-08-09", "2026-08-09T12:00Z", "2026-13-01T00:00:00Z",
                     "1969-12-31T23:59:59.999999Z", "9999-12-31T23:59:59Z"]),
    st.none(), st.integers(), st.text(max_size=12))
number_texts = st.sampled_from(["1.", ".5", "01", "-0", "1e400", "nan", "inf", "1_0", " 2",
                                "1e5", "-1.25E-3", "0x10", "", "9" * 30])
numbers = st.one_of(
    st.none(), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers().map(str),
    number_texts, st.lists(st.integers(), max_size=1))
fields = {
    "timestamp": timestamps,
    "symbol": st.one_of(st.sampled_from(["BTC-USD", "ETH-USD", ""]), st.none(),
                        st.integers(), st.text(max_size=6)),
    "exchange": st.one_of(st.none(), st.just("sim"), st.integers(), st.text(max_size=4)),
    **dict.fromkeys(NUMERIC, numbers),
    "sequence": st.one_of(numbers, st.integers(-(2**64), 2**64)),
}


@st.composite
def tick_values(draw: Any) -> bytes:
    """A tick object whose fields are mostly right, each sometimes anything (or missing)."""
    obj: dict[str, Any] = {}
    for name, strategy in fields.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # missing
        clean = draw(st.integers(0, 2)) > 0
        obj[name] = GOOD[name] if clean and name != "sequence" else draw(strategy)
    if draw(st.booleans()):
        obj["extra"] = draw(st.text(max_size=5))
    compact = draw(st.booleans())
    text = json.dumps(obj, separators=(",", ":") if compact else None,
                      ensure_ascii=draw(st.booleans()))
    if obj and draw(st.integers(0, 4)) == 0:  # a field twice (json.loads keeps the last)
        name = draw(st.sampled_from(sorted(fields)))
        text = text[:-1] + f', "{name}": {json.dumps(draw(fields[name]))}}}'
    return text.encode("utf-8", "surrogatepass")


clean_fields = {
    "timestamp": st.builds(
        lambda d, us, zone: f"2026-08-{d:02d}T12:30:15{us}{zone}", st.integers(1, 28),
        st.sampled_from(["", ".5", ".000001", ".123456", ".1234567", ".123456789"]),
        st.sampled_from(["Z", "+00:00", "-05:30", "+0100"])),
    "symbol": st.sampled_from(["BTC-USD", "ETH-USD", "é", "A\\B", "\u2028"]),
    "exchange": st.sampled_from(["sim", None, ""]),
    **dict.fromkeys(NUMERIC, st.none() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.integers(-(2**70), 2**70)),
    "sequence": st.none() | st.integers(-(2**53), 2**53),
}


@st.composite
def clean_tick_values(draw: Any) -> bytes:
    """A tick the fast path takes, mostly: any field may be missing or a number of any size."""
    obj = {name: draw(strategy) for name, strategy in clean_fields.items()
           if name in REQUIRED or draw(st.integers(0, 5))}
    return json.dumps(obj, separators=(",", ":") if draw(st.booleans()) else None,
                      ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=int(os.environ.get("TICK_FUZZ_EXAMPLES", 300)), deadline=None)
@given(values=st.lists(clean_tick_values(), min_size=1, max_size=6))
def test_generated_clean_values_decode_alike(values: list[bytes]) -> None:
    event("fast path" if decode_clean(values) is not None else "Arrow path")
    assert_same(values)


@settings(max_examples=int(os.environ.get("TICK_FUZZ_EXAMPLES", 300)), deadline=None)
@given(values=st.lists(clean_tick_values(), min_size=1, max_size=6))
def test_generated_clean_values_as_strings_decode_alike(values: list[bytes]) -> None:
    texts = [text_tick(**json.loads(v)) for v in values]
    event("fast path" if decode_clean(texts) is not None else "Arrow path")
    assert_same(texts)


@settings(max_examples=int(os.environ.get("TICK_FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(tick_values() | st.binary(max_size=40), min_size=1, max_size=12))
def test_generated_values_decode_alike(values: list[bytes]) -> None:
    assert_same(values)


NUMBER_TEXT = r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=st.lists(st.floats(allow_nan=False, allow_infinity=False)
                       | st.integers(-(2**64), 2**64), min_size=1, max_size=20),
       digits=st.lists(st.from_regex(NUMBER_TEXT, fullmatch=True), min_size=1, max_size=20))
def test_numbers_parse_to_the_same_doubles(prices: list[float], digits: list[str]) -> None:
    values = [tick(price=p, sequence=i) for i, p in enumerate(prices)]
    values += [raw_tick(price=d.encode()) for d in digits]
    assert_same(values)
    assert_same([raw_tick(price=f'"{d}"'.encode()) for d in digits])  # as strings


HARD = ["0.1", "2.2250738585072011e-308", "9007199254740993", "4.9406564584124654e-324",
        "1.00000000000000011102230246251565404236316680908203125",
        "179769313486231570000000000000000000000000", "2.47032822920623272e-324"]


def test_float_fields_are_exactly_the_parsed_doubles() -> None:
    values = [raw_tick(price=d.encode()) for d in HARD]
    assert decode_clean(values) is not None
    batch, _ = assert_same(values)
    assert batch.column("price").to_pylist() == [float(d) for d in HARD]
