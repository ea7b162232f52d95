"""Hypothesis fuzz: the three exchange frame parsers and the Kafka tick codec never raise.

Arbitrary bytes, arbitrary JSON shapes, real frames with one value replaced by anything, and
frames nested past the decoder's limit: each parser returns a Frame whose ticks can be written
(Parquet and JSON), and the codec accounts for every value as a row or a counted reason.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tickflow.connectors import binance, coinbase, kraken
from tickflow.connectors.coinbase import tick_to_json, ticks_to_table
from tickflow.connectors.tick_codec import decode_tick_values

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = b"[" * 5000 + b"]" * 5000
KEYS = ("channel", "timestamp", "sequence_num", "events", "tickers", "type", "product_id",
        "price", "best_bid", "best_ask", "volume_24_h", "stream", "data", "e", "s", "u", "b",
        "a", "B", "A", "p", "q", "T", "t", "symbol", "bid", "ask", "last", "bid_qty",
        "ask_qty", "volume", "qty", "trade_id", "timestamp", "event", "id", "result", "error",
        "code", "msg", "sequence", "exchange")

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=30)
           | st.sampled_from(["1.5", "-1", "0", "1e400", "nan", "2026-08-09T12:00:00Z",
                              "BTC-USD", "BTC/USD", "btcusdt@bookTicker", "ticker", "trade",
                              "heartbeats", "snapshot", "update", "9" * 30]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6),
    max_leaves=25)

COINBASE = json.dumps({
    "channel": "ticker", "timestamp": "2026-08-09T21:05:48.123456789Z", "sequence_num": 3,
    "events": [{"type": "update", "tickers": [{
        "type": "ticker", "product_id": "BTC-USD", "price": "65000.1", "volume_24_h": "1.5",
        "best_bid": "65000.0", "best_ask": "65000.2", "best_bid_quantity": "0.1",
        "best_ask_quantity": "0.2"}]}]})
BINANCE = json.dumps({"stream": "btcusdt@bookTicker", "data": {
    "u": 400900217, "s": "BTCUSDT", "b": "25.35", "B": "31.21", "a": "25.36", "A": "40.66"}})
BINANCE_TRADE = json.dumps({"stream": "btcusdt@trade", "data": {
    "e": "trade", "E": 1, "s": "BTCUSDT", "t": 12345, "p": "0.001", "q": "100", "T": 1,
    "m": True}})
KRAKEN = json.dumps({"channel": "ticker", "type": "update", "data": [{
    "symbol": "BTC/USD", "bid": 65000.0, "bid_qty": 1.0, "ask": 65000.1, "ask_qty": 2.0,
    "last": 65000.05, "volume": 10.0, "timestamp": "2026-08-09T21:05:48.123456Z"}]})
KRAKEN_V1 = json.dumps([42, {"a": ["5525.4", 1, "1.000"], "b": ["5525.1", 1, "1.000"],
                             "c": ["5525.2", "0.1"], "v": ["1", "2"]}, "ticker", "XBT/USD"])
KRAKEN_TRADE_V1 = json.dumps([0, [["5541.2", "0.15", "1534614057.321597", "s", "l", ""]],
                              "trade", "XBT/USD"])
REAL_FRAMES = {"coinbase": [COINBASE], "binance": [BINANCE, BINANCE_TRADE],
               "kraken": [KRAKEN, KRAKEN_V1, KRAKEN_TRADE_V1]}


def parse(exchange: str, raw: str | bytes) -> coinbase.Frame:
    if exchange == "coinbase":
        return coinbase.parse_frame(raw)
    module = binance if exchange == "binance" else kraken
    return module.parse_frame(raw, 1_786_000_000_000_000, {})


def check_frame(exchange: str, raw: str | bytes) -> coinbase.Frame:
    """Parse ``raw``; the ticks must be writable and every reject must carry a reason."""
    frame = parse(exchange, raw)
    assert all(isinstance(r.reason, str) and r.reason for r in frame.rejects)
    if frame.ticks:
        table = ticks_to_table(frame.ticks)  # what the Parquet writer does
        assert table.num_rows == len(frame.ticks)
        for tick in frame.ticks:
            json.loads(tick_to_json(tick))  # what the JSON Lines and Kafka writers do
    return frame


@st.composite
def mutated_frame(draw: Any, exchange: str) -> str:
    """A real frame of ``exchange`` with one value, anywhere in it, replaced by anything."""
    message = json.loads(draw(st.sampled_from(REAL_FRAMES[exchange])))
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            walk(child, [*path, key])

    walk(message, [])
    path = draw(st.sampled_from(paths[1:]))
    node = message
    for key in path[:-1]:
        node = node[key]
    if draw(st.booleans()) or not isinstance(node, dict):
        node[path[-1]] = draw(json_values)
    else:
        del node[path[-1]]
    return json.dumps(message)


def test_the_real_frames_parse_to_ticks():
    for exchange, frames in REAL_FRAMES.items():
        for raw in frames:
            frame = check_frame(exchange, raw)
            assert frame.ticks and not frame.rejects, (exchange, raw)


@FUZZ
@given(exchange=st.sampled_from(sorted(REAL_FRAMES)), raw=st.binary(max_size=300))
@example(exchange="coinbase", raw=DEEP)
@example(exchange="binance", raw=DEEP)
@example(exchange="kraken", raw=DEEP)
@example(exchange="kraken", raw=b'{"a":' * 3000 + b"1" + b"}" * 3000)
def test_parsers_take_arbitrary_bytes(exchange: str, raw: bytes) -> None:
    frame = check_frame(exchange, raw)
    if raw == DEEP:
        assert [r.reason for r in frame.rejects] == ["too_deep"] and not frame.ticks


@FUZZ
@given(exchange=st.sampled_from(sorted(REAL_FRAMES)), value=json_values)
def test_parsers_take_arbitrary_json_shapes(exchange: str, value: Any) -> None:
    check_frame(exchange, json.dumps(value))


@FUZZ
@given(data=st.data(), exchange=st.sampled_from(sorted(REAL_FRAMES)))
def test_parsers_take_real_frames_with_any_value_replaced(data: Any, exchange: str) -> None:
    check_frame(exchange, data.draw(mutated_frame(exchange)))


def test_numbers_too_large_for_the_output_columns_are_rejected():
    """A 30-digit sequence or time parses in Python but stops the Parquet writer."""
    huge = 10**30
    frames = {
        "coinbase": COINBASE.replace('"sequence_num": 3', f'"sequence_num": {huge}'),
        "binance": BINANCE_TRADE.replace('"T": 1', f'"T": {2**63 // 1000 + 1}'),
        "kraken": KRAKEN_TRADE_V1.replace("1534614057.321597", "1e300"),
    }
    for exchange, raw in frames.items():
        frame = check_frame(exchange, raw)
        assert not frame.ticks and len(frame.rejects) == 1, exchange


GOOD_TICK = json.dumps({"timestamp": "2026-08-09T12:00:00.5Z", "symbol": "A", "price": 1.5,
                        "best_bid": "1.4", "sequence": 7}).encode()
tick_objects = st.dictionaries(
    st.sampled_from(["timestamp", "symbol", "exchange", "price", "best_bid", "best_ask",
                     "best_bid_size", "best_ask_size", "last_size", "volume_24h", "sequence"]),
    json_values, max_size=8)


def check_codec(values: list[bytes]) -> tuple[pa.RecordBatch, list[tuple[int, str]]]:
    batch, rejected = decode_tick_values(values)
    assert batch.num_rows + len(rejected) == len(values)
    assert len({i for i, _ in rejected}) == len(rejected)
    assert all(0 <= i < len(values) and reason for i, reason in rejected)
    return batch, rejected


@FUZZ
@given(values=st.lists(st.binary(max_size=200) | tick_objects.map(
    lambda o: json.dumps(o).encode()) | json_values.map(lambda v: json.dumps(v).encode()),
    min_size=1, max_size=8))
@example(values=[GOOD_TICK, DEEP, GOOD_TICK])
@example(values=[b'{"timestamp": "2026-08-09T12:00:00Z", "symbol": "A", "price": '
                 + b"9" * 400 + b"}"])
@example(values=[b'{"timestamp": "2026-08-09T12:00:00Z", "symbol": "A", "sequence": '
                 + b"9" * 30 + b"}", b"null", b"  ", GOOD_TICK + b"\n" + GOOD_TICK])
def test_tick_codec_takes_arbitrary_values(values: list[bytes]) -> None:
    _, rejected = check_codec([GOOD_TICK, *values, GOOD_TICK])
    assert 0 not in {i for i, _ in rejected} and len(values) + 1 not in {i for i, _ in rejected}
    if DEEP in values:
        assert (values.index(DEEP) + 1, "too_deep") in rejected
