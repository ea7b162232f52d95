"""Hostile and broken ticks against the collector on a real loopback exchange server.

A deeply nested frame, a binary frame of garbage, truncated JSON and bad numbers arrive mixed
with real ticker frames: each is counted and kept as a dead letter with its reason and raw
payload, and every good tick still reaches the output. Ticks that parse but fail the
tick-quality checks (a price at or below zero, a crossed quote) are kept out of the output the
same way.
"""

from __future__ import annotations

import json

import pytest

from tests.arbitrage.conftest import collect_venue
from tests.arbitrage.test_venue_collectors import quotes, venue
from tests.collector.conftest import PRODUCTS, collect, tick_keys_sent, tick_keys_written
from tickflow.connectors.coinbase_server import (
    CoinbaseExchangeServer,
    market_frames,
    synthetic_frames,
)
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.exchange_server import Faults

HOSTILE = {10: "deeply_nested", 25: "binary_garbage", 40: "malformed_json",
           55: "deeply_nested", 70: "bad_number", 85: "binary_garbage", 100: "deeply_nested"}


def test_coinbase_collector_survives_hostile_frames_and_keeps_every_good_tick(tmp_path):
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 160),
                                faults=Faults(inject=HOSTILE), heartbeat_interval_s=10) as server:
        stats, out, dead = collect(server, tmp_path)
    assert server.injected == list(HOSTILE.values())
    assert stats.ticks == 160
    assert tick_keys_written(out) == tick_keys_sent(server)
    assert dict(dead.counts) == {"too_deep": 3, "malformed_json": 3, "bad_number": 1}
    assert stats.dead_letters == 7
    records = read_dead_letters(tmp_path / "dead.jsonl")
    deep = [r for r in records if r["reason"] == "too_deep"]
    assert [len(r["payload"]) for r in deep] == [10_000] * 3  # the raw frame, whole
    assert sum("\ufffd" in r["payload"] for r in records) == 2  # the binary frames, kept


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_venue_collectors_survive_hostile_frames(exchange, tmp_path):
    server, options = venue(exchange, 8, faults=Faults(inject={
        5: "deeply_nested", 15: "binary_garbage", 25: "deeply_nested", 35: "malformed_json"}))
    with server:
        stats, ticks, dead = collect_venue(server, exchange, tmp_path, **options)
        sent = len(server.sent_log)
    assert dict(dead.counts) == {"too_deep": 2, "malformed_json": 2}
    assert sent > 40 and len(quotes(ticks)) == sent == stats.ticks


def _with_bad_quotes(count: int) -> list:
    """A ticker feed where a few tickers have a zero or negative price or a crossed quote."""
    lines = [f.text for f in synthetic_frames(PRODUCTS, count)]
    bad = {20: "non_positive_price", 33: "crossed_quote", 47: "non_positive_price",
           61: "crossed_quote", 75: "crossed_quote"}
    for i, reason in bad.items():
        message = json.loads(lines[i])
        ticker = message["events"][0]["tickers"][0]
        if reason == "crossed_quote":
            ticker["best_bid"] = str(float(ticker["best_ask"]) + 5)
        else:
            ticker["price"] = "0" if i == 20 else "-3.5"
        lines[i] = json.dumps(message)
    return market_frames(lines)


def test_collector_keeps_ticks_failing_the_quality_checks_out_of_its_output(tmp_path):
    frames = _with_bad_quotes(120)
    with CoinbaseExchangeServer(frames, heartbeat_interval_s=10) as server:
        stats, out, dead = collect(server, tmp_path)
    written = tick_keys_written(out)
    sent = tick_keys_sent(server)
    assert sum(sent.values()) == 120 and sum(written.values()) == 115
    assert not written - sent and sum((sent - written).values()) == 5
    assert all(k[2] > 0 for k in written)
    for line in out.read_text().splitlines():
        tick = json.loads(line)
        assert tick["best_bid"] <= tick["best_ask"]
    assert dict(dead.counts) == {"non_positive_price": 2, "crossed_quote": 3}
    assert stats.bad_ticks == 5 and stats.ticks == 115
    assert "5 ticks failing the tick-quality checks" in stats.summary()
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert sorted(json.loads(r["payload"])["price"] for r in records
                  if r["reason"] == "non_positive_price") == [-3.5, 0.0]
