"""Binance and Kraken frames, recorded and documented, become canonical ticks or dead letters."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from tests.conftest import shared_path
from tickflow.connectors import binance, kraken
from tickflow.connectors.exchange_protocol import SubscribeRequest, common_symbol, get_protocol

T0 = 1_700_000_000_000_000


def recv_frames(name: str) -> list[tuple[str, int]]:
    path = shared_path("data", "other_exchanges", f"{name}_cryptofeed_capture.jsonl.gz")
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            record = json.loads(line)
            if record.get("t") == "recv":
                out.append((record["data"], int(record["ts"] * 1e6)))
    return out


@pytest.mark.parametrize(("name", "quotes", "trades"), [("BINANCE", 84, 2),
                                                        ("BINANCE_US", 128, 11)])
def test_recorded_binance_frames_parse_without_a_reject(name, quotes, trades):
    ticks, channels = [], Counter()
    for text, received in recv_frames(name):
        frame = binance.parse_frame(text, received)
        assert frame.rejects == [], (text[:200], frame.rejects)
        channels[frame.channel] += 1
        ticks += frame.ticks
    assert channels["bookTicker"] == quotes and channels["aggTrade"] == trades
    book = [t for t in ticks if t["best_bid"] is not None]
    assert len(book) == quotes
    assert all(t["exchange"] == "binance" and "-" in t["symbol"] for t in ticks)
    assert all(t["best_bid"] <= t["best_ask"] and t["price"] == (t["best_bid"] + t["best_ask"]) / 2
               for t in book)
    # bookTicker has no event time: the receive time stamps it
    assert {t["timestamp"] for t in book} <= {r for _, r in recv_frames(name)}


def test_binance_first_recorded_quote_maps_exactly():
    text, received = next((t, r) for t, r in recv_frames("BINANCE") if "bookTicker" in t)
    tick = binance.parse_frame(text, received, {"NKNUSDT": "NKN-USD"}).ticks[0]
    assert tick == {"timestamp": received, "symbol": "NKN-USD", "exchange": "binance",
                    "price": pytest.approx(0.35235), "best_bid": 0.3521, "best_ask": 0.3526,
                    "best_bid_size": 672.0, "best_ask_size": 3199.0, "last_size": None,
                    "volume_24h": None, "sequence": 499869768}


def test_binance_trade_uses_trade_time_and_id_and_keys_the_gap_check_by_symbol():
    raw = json.dumps({"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345,
                      "p": "0.001", "q": "100", "T": 1672515782136, "m": True, "M": True})
    frame = binance.parse_frame(raw, T0)
    assert frame.ticks[0]["timestamp"] == 1672515782136000
    assert frame.ticks[0]["symbol"] == "BNB-BTC" and frame.ticks[0]["last_size"] == 100.0
    assert (frame.sequence_num, frame.sequence_stream) == (12345, "trade:BNBBTC")


def test_usdt_is_never_silently_usd():
    assert common_symbol("BTCUSDT", {}) == "BTC-USDT"
    assert common_symbol("BTCUSDT", {"BTCUSDT": "BTC-USD"}) == "BTC-USD"
    assert common_symbol("XBT/USD", {}) == "BTC-USD"
    assert common_symbol("BTC/USDT", {}) == "BTC-USDT"


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"stream":"btcusdt@bookTicker","data":{"u":', "malformed_json"),
    ('[1, 2]', "not_an_object"),
    ('{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","B":"1","a":"2","A":"1"}}',
     "missing_field"),
    ('{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1,0","B":"1","a":"2",'
     '"A":"1"}}', "bad_number"),
    ('{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"NaN","B":"1","a":"2",'
     '"A":"1"}}', "bad_number"),
    ('{"code":2,"msg":"Invalid request","id":1}', "error_frame"),
    ('{"stream":"btcusdt@mystery","data":{"e":"mystery"}}', "unknown_channel"),
])
def test_bad_binance_frames_are_rejects_with_the_raw_payload(raw, reason):
    frame = binance.parse_frame(raw, T0)
    assert frame.ticks == [] and [r.reason for r in frame.rejects] == [reason]
    assert frame.rejects[0].payload == raw


def test_recorded_kraken_v1_frames_parse():
    ticks, channels = [], Counter()
    for text, received in recv_frames("KRAKEN"):
        frame = kraken.parse_frame(text, received)
        assert frame.rejects == [], text[:200]
        channels[frame.channel] += 1
        ticks += frame.ticks
    assert channels["ticker"] == 18 and channels["trade"] == 8 and channels["heartbeat"] == 92
    quotes = [t for t in ticks if t["best_bid"] is not None]
    assert len(quotes) == 18 and all(t["best_bid"] <= t["best_ask"] for t in quotes)
    assert {"BTC-CHF", "XMR-USD"} <= {t["symbol"] for t in ticks}  # XBT -> BTC
    assert not any("XBT" in t["symbol"] for t in ticks)


def test_kraken_v2_documented_messages():
    ticker = ('{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,'
              '"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,'
              '"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,'
              '"change":-0.00017,"change_pct":-0.17}]}')
    tick = kraken.parse_frame(ticker, T0).ticks[0]
    assert tick == {"timestamp": T0, "symbol": "ALGO-USD", "exchange": "kraken",
                    "price": 0.10035, "best_bid": 0.10025, "best_ask": 0.10036,
                    "best_bid_size": 740.0, "best_ask_size": 1361.44813783, "last_size": None,
                    "volume_24h": 997038.98383185, "sequence": None}
    trade = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
             '"price":105944.20,"qty":0.00027625,"ord_type":"limit","trade_id":10218208,'
             '"timestamp":"2023-10-06T17:35:55.440295Z"}]}')
    frame = kraken.parse_frame(trade, T0)
    assert frame.ticks[0]["timestamp"] == 1696613755440295
    assert frame.ticks[0]["sequence"] == 10218208 and frame.ticks[0]["last_size"] == 0.00027625
    assert (frame.sequence_num, frame.sequence_stream) == (10218208, "trade:BTC-USD")
    for control in ('{"channel":"heartbeat"}', '{"method":"pong","req_id":1}',
                    '{"channel":"status","type":"update","data":[{"system":"online"}]}'):
        assert kraken.parse_frame(control, T0).rejects == []


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"channel":"ticker","data":[{"symbol":', "malformed_json"),
    ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","ask":1,"last":1}]}',
     "missing_field"),
    ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":"1,0","ask":1,'
     '"last":1}]}', "bad_number"),
    ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1,"ask":1,'
     '"last":1,"timestamp":"yesterday"}]}', "bad_timestamp"),
    ('{"method":"subscribe","error":"Currency pair not supported XBT/USD","success":false}',
     "error_frame"),
    ('{"channel":"ticker_v9","type":"update","data":[]}', "unknown_channel"),
    ('[1, {"a": []}, "ticker", "XBT/USD"]', "missing_field"),
])
def test_bad_kraken_frames_are_rejects(raw, reason):
    frame = kraken.parse_frame(raw, T0)
    assert frame.ticks == [] and [r.reason for r in frame.rejects] == [reason]


def test_subscribe_messages_follow_each_venue():
    request = SubscribeRequest(products=("BTC-USD", "ETH-USD"), channels=("bookTicker",),
                               symbol_map={"BTCUSDT": "BTC-USD"})
    assert get_protocol("binance").subscribe_messages(request) == [
        {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "ethusd@bookTicker"], "id": 1}]
    request = SubscribeRequest(products=("BTC-USD",), channels=("ticker", "trade"),
                               symbol_map={})
    assert get_protocol("kraken").subscribe_messages(request) == [
        {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"],
                                           "snapshot": True, "event_trigger": "bbo"},
         "req_id": 1},
        {"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"],
                                           "snapshot": True}, "req_id": 2}]
    with pytest.raises(ValueError, match="unknown exchange 'bitmex'"):
        get_protocol("bitmex")
