"""The loopback server speaks the Coinbase protocol as PROTOCOLS.md describes the live feed."""

from __future__ import annotations

import asyncio
import csv
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import shared_path
from tickflow.connectors.coinbase import parse_frame
from tickflow.connectors.coinbase_server import (
    CoinbaseExchangeServer,
    load_frames,
    synthetic_frames,
)
from tickflow.connectors.exchange_server import Faults, parse_speed


def sub(channel: str, products=("BTC-USD", "ETH-USD"), kind="subscribe") -> str:
    return json.dumps({"type": kind, "product_ids": list(products), "channel": channel})


async def read(ws, n: int, timeout_s: float = 10.0) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout_s)) for _ in range(n)]


def test_subscribe_confirm_sequence_and_heartbeats():
    frames = synthetic_frames(["BTC-USD", "ETH-USD"], 50)
    with CoinbaseExchangeServer(frames, heartbeat_interval_s=0.05, speed=0.5) as server:
        async def client() -> list[dict]:
            async with connect(server.url) as ws:
                await ws.send(sub("ticker"))
                await ws.send(sub("heartbeats", ()))
                return await read(ws, 40)

        messages = asyncio.run(client())
    assert [m["sequence_num"] for m in messages] == list(range(40))
    assert messages[0] == {**messages[0], "channel": "subscriptions",
                           "events": [{"subscriptions": {"ticker": ["BTC-USD", "ETH-USD"]}}]}
    confirmations = [m for m in messages if m["channel"] == "subscriptions"]
    assert confirmations[-1]["events"][0]["subscriptions"] == {
        "ticker": ["BTC-USD", "ETH-USD"], "heartbeats": ["heartbeats"]}
    beats = [m for m in messages if m["channel"] == "heartbeats"]
    assert beats, "no heartbeat in 40 messages"
    counters = [b["events"][0]["heartbeat_counter"] for b in beats]
    assert all(isinstance(c, int) for c in counters)
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    tickers = [m for m in messages if m["channel"] == "ticker"]
    assert tickers[0]["events"][0]["type"] == "snapshot"
    assert all("client_id" not in m for m in messages)
    for m in tickers:  # the collector's parser takes every one
        frame = parse_frame(json.dumps(m))
        assert frame.rejects == [] and len(frame.ticks) == 1
        assert isinstance(m["events"][0]["tickers"][0]["price"], str)


def test_no_subscribe_in_time_gets_an_error_and_a_close():
    with CoinbaseExchangeServer(subscribe_timeout_s=0.2) as server:
        async def client() -> tuple[dict, int | None]:
            async with connect(server.url) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return first, ws.close_code

        error, code = asyncio.run(client())
    assert error == {"type": "error", "message": "subscribe or unsubscribe required"}
    assert code == 1008


def test_unsubscribe_and_unknown_channel():
    with CoinbaseExchangeServer(synthetic_frames(["BTC-USD"], 5), speed=0.001) as server:
        async def client() -> list[dict]:
            async with connect(server.url) as ws:
                await ws.send(sub("ticker", ["BTC-USD"]))
                await ws.send(sub("full", ["BTC-USD"]))
                await ws.send(sub("ticker", ["BTC-USD"], kind="unsubscribe"))
                out: list[dict] = []
                while len(out) < 3:  # the market's first ticker may come in between
                    out += [m for m in await read(ws, 1) if m.get("channel") != "ticker"]
                return out

        first, error, last = asyncio.run(client())
    assert first["events"][0]["subscriptions"] == {"ticker": ["BTC-USD"]}
    assert error == {"type": "error", "message": "Failed to subscribe"}
    assert last["channel"] == "subscriptions" and last["events"][0]["subscriptions"] == {}


def test_new_connection_restarts_sequence_and_continues_the_market():
    frames = synthetic_frames(["BTC-USD", "ETH-USD"], 200)
    with CoinbaseExchangeServer(frames, speed=0.0,
                                faults=Faults(disconnect_after=30)) as server:
        async def session() -> list[dict]:
            out = []
            async with connect(server.url) as ws:
                await ws.send(sub("ticker"))
                try:
                    while True:
                        wait_s = 1.0 if server.feed_exhausted.is_set() else 10.0
                        out.append(json.loads(await asyncio.wait_for(ws.recv(), wait_s)))
                except (ConnectionClosed, TimeoutError):
                    pass
            return out

        first = asyncio.run(session())
        second = asyncio.run(session())
    assert len([m for m in first if m["channel"] == "ticker"]) == 30
    assert [m["sequence_num"] for m in second] == list(range(len(second)))
    snapshots = [m for m in second if m["channel"] == "ticker"
                 and m["events"][0]["type"] == "snapshot"]
    # the resubscribe gets the current state of both products, then the market goes on
    assert {s["events"][0]["tickers"][0]["product_id"] for s in snapshots} == {"BTC-USD",
                                                                              "ETH-USD"}
    last_of_first = first[-1]["events"][0]["tickers"][0]["price"]
    assert last_of_first in {s["events"][0]["tickers"][0]["price"] for s in snapshots}
    assert len(server.sent_ticks) == 200 + len(snapshots)


def test_recorded_frames_replay_verbatim_including_5mb_level2_snapshots():
    frames = load_frames(shared_path("data", "coinbase_advanced_trade",
                                     "server_frames_2026-08-09.jsonl.gz"))
    csv_path = shared_path("data", "coinbase_advanced_trade", "ticker_canonical_2026-08-09.csv")
    with csv_path.open(encoding="utf-8") as f:
        expected = [(r["symbol"], r["price"], r["best_ask_size"]) for r in csv.DictReader(f)]
    channels = ("market_trades", "candles", "ticker", "level2")
    with CoinbaseExchangeServer(frames) as server:
        async def client() -> list[str]:
            out = []
            async with connect(server.url, max_size=None) as ws:
                for channel in channels:
                    await ws.send(sub(channel))
                while not (server.feed_exhausted.is_set() and len(out) >= server.sent_frames):
                    out.append(await asyncio.wait_for(ws.recv(), 10))
            return out

        raw = asyncio.run(client())
    parsed = [parse_frame(text) for text in raw]
    assert all(p.rejects == [] for p in parsed)
    assert [p.sequence_num for p in parsed] == list(range(len(parsed)))
    by_channel = [p.channel for p in parsed if p.channel != "subscriptions"]
    assert len(by_channel) == 1030 - 25 - 5  # every data frame; heartbeats are the server's own
    assert max(len(text) for text in raw) > 5_000_000
    ticks = [t for p in parsed for t in p.ticks]
    assert [(t["symbol"], t["price"], t["best_ask_size"]) for t in ticks] == [
        (s, float(p), float(a)) for s, p, a in expected]


def test_require_jwt_refuses_an_unauthenticated_subscribe():
    with CoinbaseExchangeServer(require_jwt=True) as server:
        async def client() -> dict:
            async with connect(server.url) as ws:
                await ws.send(sub("ticker"))
                return json.loads(await asyncio.wait_for(ws.recv(), 5))

        assert asyncio.run(client()) == {"type": "error", "message": "authentication failure"}


@pytest.mark.parametrize(("text", "factor"), [("1x", 1.0), ("10x", 10.0), ("2.5", 2.5),
                                              ("max", 0.0)])
def test_parse_speed(text, factor):
    assert parse_speed(text) == factor


@pytest.mark.parametrize("text", ["fast", "-2x", "0.0x1"])
def test_parse_speed_rejects(text):
    with pytest.raises(ValueError, match="speed"):
        parse_speed(text)
