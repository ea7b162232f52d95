"""Binance and Kraken collectors against real loopback servers speaking each protocol."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.arbitrage.conftest import collect_venue
from tests.conftest import shared_path
from tickflow.connectors import binance_server, kraken_server
from tickflow.connectors.binance_server import BinanceExchangeServer
from tickflow.connectors.exchange_server import Faults
from tickflow.connectors.kraken_server import KrakenExchangeServer

BINANCE_MAP = {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"}  # USDT taken as USD: stated


def binance_frames(seconds: float = 20.0, trades_every: int = 0):
    return binance_server.synthetic_frames(("BTC-USD", "ETH-USD"), duration_s=seconds,
                                           trades_every=trades_every)


def kraken_frames(seconds: float = 20.0, trades_every: int = 0):
    return kraken_server.synthetic_frames(("BTC-USD", "ETH-USD"), duration_s=seconds,
                                          trades_every=trades_every)


def venue(exchange, seconds=20.0, trades_every=0, **server_options):
    """A loopback server of ``exchange`` and the collector options its symbols need."""
    if exchange == "binance":
        return (BinanceExchangeServer(binance_frames(seconds, trades_every), **server_options),
                {"symbol_map": BINANCE_MAP})
    return KrakenExchangeServer(kraken_frames(seconds, trades_every), **server_options), {}


def quotes(ticks):
    return [t for t in ticks if t["best_bid"] is not None]


def test_binance_server_answers_subscribe_and_wraps_streams():
    with BinanceExchangeServer(binance_frames(5)) as server:
        async def client():
            async with connect(server.url + "/stream", close_timeout=1) as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "id": 7,
                                          "params": ["btcusdt@bookTicker"]}))
                first = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
                await ws.send("not json")
                while True:  # the error answer arrives among the market frames
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if "code" in message:
                        return first, message

        first, error = asyncio.run(client())
    assert first[0] == {"result": None, "id": 7}
    assert all(m["stream"] == "btcusdt@bookTicker" for m in first[1:])
    assert error["code"] == 2


def test_kraken_server_sends_status_acks_and_heartbeats():
    with KrakenExchangeServer(kraken_frames(5), heartbeat_interval_s=0.05) as server:
        async def client():
            async with connect(server.url, close_timeout=1) as ws:
                await ws.send(json.dumps({"method": "subscribe", "req_id": 3, "params": {
                    "channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"]}}))
                await ws.send(json.dumps({"method": "subscribe", "req_id": 4, "params": {
                    "channel": "book", "symbol": ["BTC/USD"]}}))
                return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(40)]

        messages = asyncio.run(client())
    assert messages[0]["channel"] == "status"
    acks = [m for m in messages if m.get("method") == "subscribe"]
    assert [a["success"] for a in acks] == [True, True, False]
    assert {a["result"]["symbol"] for a in acks if a["success"]} == {"BTC/USD", "ETH/USD"}
    assert any(m.get("channel") == "heartbeat" for m in messages)
    tickers = [m for m in messages if m.get("channel") == "ticker"]
    assert tickers and all(isinstance(m["data"][0]["bid"], float) for m in tickers)


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_collector_writes_every_quote_sent_in_common_naming(exchange, tmp_path):
    server, options = venue(exchange)
    with server:
        stats, ticks, dead = collect_venue(server, exchange, tmp_path, **options)
        sent = len(server.sent_log)
    assert sent > 100 and len(quotes(ticks)) == sent == stats.ticks
    assert {t["symbol"] for t in ticks} == {"BTC-USD", "ETH-USD"}
    assert {t["exchange"] for t in ticks} == {exchange}
    assert dead.total == 0 and stats.reconnects == 0
    assert stats.summary().startswith(f"{exchange} collector:")


def test_binance_without_a_symbol_map_keeps_usdt(tmp_path):
    with BinanceExchangeServer(binance_frames(3)) as server:
        _, ticks, _ = collect_venue(server, "binance", tmp_path,
                                    products=("BTC-USD", "ETH-USDT"),
                                    symbol_map={"BTCUSDT": "BTC-USD"})
    assert {t["symbol"] for t in ticks} == {"BTC-USD", "ETH-USDT"}


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_disconnect_reconnects_resubscribes_and_loses_nothing_sent(exchange, tmp_path):
    server, options = venue(exchange, faults=Faults(disconnect_after=40))
    with server:
        stats, ticks, _ = collect_venue(server, exchange, tmp_path, **options)
        sent = len(server.sent_log)
        subscribes = len(server.received)
    assert stats.reconnects == 1 and subscribes >= 2
    assert len(quotes(ticks)) == sent


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_trade_gaps_and_duplicates_are_counted_per_symbol(exchange, tmp_path):
    # trade frames 3 and 7 never arrive; sequence 20 (a frame) is sent twice
    server, options = venue(exchange, 10, trades_every=5, drop_trades=frozenset({3, 7}),
                            faults=Faults(duplicate_sequence=frozenset({20})))
    frame = server.frames[20]
    with server:
        stats, ticks, _ = collect_venue(server, exchange, tmp_path, channels=(
            "bookTicker" if exchange == "binance" else "ticker", "trade"), **options)
    assert stats.gaps == 2 and stats.missing == 2
    # a duplicated trade frame is dropped by its id; a duplicated quote has no id to check
    assert stats.duplicates == (1 if frame.channel.endswith("trade") else 0)
    trades = [t for t in ticks if t["last_size"] is not None]
    assert trades and len({(t["symbol"], t["sequence"]) for t in trades}) == len(trades)


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_malformed_messages_go_to_dead_letters_and_the_feed_continues(exchange, tmp_path):
    faults = Faults(inject={10: "malformed_json", 20: "missing_field", 30: "bad_number",
                            40: "unknown_channel", 50: "error_frame"})
    server, options = venue(exchange, faults=faults)
    with server:
        stats, ticks, dead = collect_venue(server, exchange, tmp_path, **options)
        sent = len(server.sent_log)
    assert dict(dead.counts) == {"malformed_json": 1, "missing_field": 1, "bad_number": 1,
                                 "unknown_channel": 1, "error_frame": 1}
    assert stats.error_frames == 1 and len(quotes(ticks)) == sent
    records = [json.loads(line) for line in dead.path.read_text().splitlines()]
    assert {r["reason"] for r in records} == set(dead.counts)
    assert all(r["payload"] for r in records)


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_a_silent_feed_trips_the_watchdog_and_reconnects(exchange, tmp_path):
    # the silent connection sends nothing at all, Kraken's heartbeats included
    server, options = venue(exchange, faults=Faults(silence_after=30))
    with server:
        stats, ticks, _ = collect_venue(server, exchange, tmp_path, heartbeat_timeout_s=0.5,
                                        **options)
        sent = len(server.sent_log)
    assert stats.heartbeat_timeouts >= 1 and stats.reconnects >= 1
    assert len(quotes(ticks)) == sent


def test_recorded_binance_capture_replays_through_server_and_collector(tmp_path):
    frames = binance_server.load_frames(shared_path(
        "data", "other_exchanges", "BINANCE_cryptofeed_capture.jsonl.gz"))
    with BinanceExchangeServer(frames) as server:
        stats, ticks, dead = collect_venue(server, "binance", tmp_path,
                                           products=("NKN-USDT", "BLZ-ETH", "LRC-BTC",
                                                     "RUNE-EUR"),
                                           channels=("bookTicker", "aggTrade"))
    assert len(quotes(ticks)) == 84 and dead.total == 0
    assert {t["symbol"] for t in quotes(ticks)} <= {"NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"}
    assert stats.by_channel["bookTicker"] == 84


def test_recorded_kraken_v1_capture_replays_as_v2(tmp_path):
    frames = kraken_server.load_frames(shared_path(
        "data", "other_exchanges", "KRAKEN_cryptofeed_capture.jsonl.gz"))
    assert {f.channel for f in frames} == {"ticker", "trade"}
    products = sorted({p.replace("/", "-") for f in frames for p in f.products})
    with KrakenExchangeServer(frames) as server:
        stats, ticks, dead = collect_venue(server, "kraken", tmp_path, products=tuple(products),
                                           channels=("ticker", "trade"))
    assert len(quotes(ticks)) == 18 and dead.total == 0 and stats.gaps == 0
    assert "BTC-CHF" in {t["symbol"] for t in ticks}
