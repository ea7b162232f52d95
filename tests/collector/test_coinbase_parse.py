"""The Coinbase message parser against real production frames and every kind of bad input."""

from __future__ import annotations

import csv
import gzip
import json
import math
import re

import pytest

from tests.conftest import shared_path
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.coinbase import (
    format_timestamp_us,
    parse_frame,
    parse_timestamp_us,
    tick_to_json,
    ticks_to_table,
)
from tickflow.connectors.tick_codec import decode_tick_values

DATA = ("data", "coinbase_advanced_trade")
TICKER = {"type": "ticker", "product_id": "BTC-USD", "price": "65086.18",
          "volume_24_h": "2867.54532609", "best_bid": "65083.66", "best_ask": "65083.67",
          "best_bid_quantity": "0.20371215", "best_ask_quantity": "0.24290402"}


def ticker_frame(ticker: dict | list | None = None, **envelope: object) -> str:
    tickers = ticker if isinstance(ticker, list) else [ticker or TICKER]
    message = {"channel": "ticker", "timestamp": "2026-08-09T21:05:48.229198328Z",
               "sequence_num": 6, "events": [{"type": "update", "tickers": tickers}]}
    message.update(envelope)
    return json.dumps({k: v for k, v in message.items() if v is not None})


def test_recorded_frames_parse_to_the_canonical_csv():
    frames_path = shared_path(*DATA, "server_frames_2026-08-09.jsonl.gz")
    csv_path = shared_path(*DATA, "ticker_canonical_2026-08-09.csv")
    with csv_path.open(encoding="utf-8") as f:
        expected = list(csv.DictReader(f))
    ticks, channels = [], set()
    with gzip.open(frames_path, "rt", encoding="utf-8") as f:
        for line in f:
            frame = parse_frame(line)
            assert frame.rejects == [], frame.rejects
            channels.add(frame.channel)
            ticks.extend(frame.ticks)
    assert channels == {"l2_data", "ticker", "market_trades", "heartbeats", "candles",
                        "subscriptions"}
    assert len(ticks) == len(expected) == 160
    for tick, row in zip(ticks, expected, strict=True):
        # the CSV keeps the feed's nanoseconds; the canonical schema truncates to μs
        assert format_timestamp_us(tick["timestamp"]) == row["timestamp"][:26] + "Z"
        assert tick["symbol"] == row["symbol"]
        assert tick["exchange"] == row["exchange"] == "coinbase"
        assert tick["sequence"] == int(row["sequence"])
        assert tick["last_size"] is None and row["last_size"] == ""
        for name in ("price", "best_bid", "best_ask", "best_bid_size", "best_ask_size",
                     "volume_24h"):
            assert tick[name] == float(row[name]), name
    table = ticks_to_table(ticks)
    assert table.schema.equals(CANONICAL_TICK_SCHEMA)
    assert table.num_rows == 160


def test_tick_json_is_what_the_kafka_decoder_reads():
    tick = parse_frame(ticker_frame()).ticks[0]
    text = tick_to_json(tick)
    value = json.loads(text)
    assert list(value) == CANONICAL_TICK_SCHEMA.names
    assert value["timestamp"] == "2026-08-09T21:05:48.229198Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value["timestamp"])
    assert value["best_bid_size"] == 0.20371215 and value["last_size"] is None
    batch, rejected = decode_tick_values([text.encode()])
    assert rejected == []
    assert batch.to_pylist()[0]["price"] == 65086.18
    assert batch.column("timestamp").cast("int64").to_pylist() == [tick["timestamp"]]


@pytest.mark.parametrize(("text", "expected_us"), [
    ("2026-08-09T21:05:48.229198328Z", 1786309548229198),
    ("2026-08-09T21:05:49.25328358Z", 1786309549253283),
    ("2026-08-09T21:05:48Z", 1786309548000000),
    ("2026-08-09T23:05:48.5+02:00", 1786309548500000),
])
def test_timestamps_truncate_to_microseconds(text, expected_us):
    assert parse_timestamp_us(text) == expected_us


@pytest.mark.parametrize("text", ["yesterday", "2026-08-09T21:05:48.12a4Z", "", 1786309548])
def test_bad_timestamps_raise(text):
    with pytest.raises(ValueError, match=r"RFC 3339|fraction"):
        parse_timestamp_us(text)


@pytest.mark.parametrize(("frame", "reason", "detail"), [
    ('{"channel":"ticker","sequence_num":', "malformed_json", "not JSON"),
    ("[1, 2]", "not_an_object", "found list"),
    ('{"type":"error","message":"authentication failure"}', "error_frame",
     "authentication failure"),
    ('{"channel":"ticker_v9","timestamp":"2026-08-09T21:05:48Z","sequence_num":3,"events":[]}',
     "unknown_channel", "ticker_v9"),
    (ticker_frame({**TICKER, "price": "65,083.67"}), "bad_number", "price"),
    (ticker_frame({**TICKER, "best_bid": "NaN"}), "bad_number", "best_bid"),
    (ticker_frame({**TICKER, "best_ask": True}), "bad_number", "best_ask"),
    (ticker_frame({k: v for k, v in TICKER.items() if k != "price"}), "missing_field",
     "missing price"),
    (ticker_frame({k: v for k, v in TICKER.items() if k != "product_id"}), "missing_field",
     "missing product_id"),
    (ticker_frame(sequence_num=None), "missing_field", "sequence_num"),
    (ticker_frame(timestamp=None), "missing_field", "timestamp"),
    (ticker_frame(timestamp="21:05"), "bad_timestamp", "timestamp"),
    (ticker_frame(sequence_num=-1), "bad_number", "sequence_num"),
    (ticker_frame(events={"tickers": []}), "bad_shape", "events"),
])
def test_bad_messages_become_rejects_with_reasons(frame, reason, detail):
    parsed = parse_frame(frame)
    assert parsed.ticks == []
    assert [r.reason for r in parsed.rejects] == [reason]
    assert detail in parsed.rejects[0].detail
    assert parsed.rejects[0].payload  # the raw message (or the bad ticker) is kept


def test_unknown_channel_keeps_its_sequence_number():
    parsed = parse_frame('{"channel":"ticker_v9","sequence_num":41,"events":[]}')
    assert parsed.sequence_num == 41 and parsed.rejects[0].reason == "unknown_channel"


def test_numbers_as_json_numbers_or_strings_are_both_accepted():
    as_numbers = {k: (float(v) if k not in ("type", "product_id") else v)
                  for k, v in TICKER.items()}
    a = parse_frame(ticker_frame(as_numbers, sequence_num="6", client_id=""))
    b = parse_frame(ticker_frame())
    assert a.rejects == [] and a.ticks == b.ticks
    assert a.sequence_num == 6


def test_one_bad_ticker_does_not_spoil_its_neighbours():
    bad = {**TICKER, "product_id": "ETH-USD", "price": "n/a"}
    parsed = parse_frame(ticker_frame([TICKER, bad]))
    assert [t["symbol"] for t in parsed.ticks] == ["BTC-USD"]
    assert [r.reason for r in parsed.rejects] == ["bad_number"]
    assert json.loads(parsed.rejects[0].payload)["ticker"]["product_id"] == "ETH-USD"


def test_ticker_batch_without_best_bid_ask_gives_nulls():
    ticker = {k: v for k, v in TICKER.items() if not k.startswith("best_")}
    parsed = parse_frame(ticker_frame(ticker, channel="ticker_batch"))
    tick = parsed.ticks[0]
    assert parsed.rejects == []
    assert tick["best_bid"] is None and tick["best_ask_size"] is None
    assert math.isclose(tick["volume_24h"], 2867.54532609)


def test_heartbeat_counter_as_integer_or_string():
    base = {"channel": "heartbeats", "timestamp": "2026-08-09T21:05:48.856364007Z",
            "sequence_num": 35}
    for counter in (41691, "41691"):
        frame = parse_frame(json.dumps({**base, "events": [{"heartbeat_counter": counter}]}))
        assert frame.heartbeat_counter == 41691 and frame.rejects == []
