"""Helpers for the collector tests: run a collector in-process against a loopback server."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tickflow.connectors.coinbase import parse_timestamp_us
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer
from tickflow.connectors.collector import Collector, CollectorSettings, CollectorStats
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.exchange_server import LoopbackServer
from tickflow.connectors.tick_writers import JsonlTickWriter, TickWriter

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")


def tick_keys_sent(server: CoinbaseExchangeServer) -> Counter[tuple[str, int, float]]:
    """(symbol, timestamp μs, price) of every ticker the server really sent."""
    return Counter((t["symbol"], parse_timestamp_us(t["timestamp"]), float(t["price"]))
                   for t in server.sent_ticks)


def tick_keys_written(path: Path) -> Counter[tuple[str, int, float]]:
    """The same keys for every tick in a collector's JSON Lines output."""
    keys: Counter[tuple[str, int, float]] = Counter()
    for line in path.read_text().splitlines():
        tick = json.loads(line)
        keys[(tick["symbol"], parse_timestamp_us(tick["timestamp"]), tick["price"])] += 1
    return keys


def collect(server: LoopbackServer, tmp_path: Path, *, writer: TickWriter | None = None,
            timeout_s: float = 30.0, exchange: str = "coinbase",
            **settings: Any) -> tuple[CollectorStats, Path, DeadLetters]:
    """Collect from ``server`` until its feed is exhausted and delivered, then stop cleanly."""
    prefix = "" if exchange == "coinbase" else f"{exchange}-"
    out = tmp_path / f"{prefix}ticks.jsonl"
    writer = writer or JsonlTickWriter(out)
    dead = DeadLetters(tmp_path / f"{prefix}dead.jsonl", source=exchange)
    options: dict[str, Any] = {"exchange": exchange, "url": server.url, "products": PRODUCTS,
                               "heartbeat_timeout_s": 5.0, "subscribe_interval_s": 0.0,
                               "backoff_base_s": 0.05, "backoff_cap_s": 0.2, **settings}
    collector = Collector(CollectorSettings(**options), writer, dead)

    async def run() -> CollectorStats:
        task = asyncio.create_task(collector.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not server.feed_exhausted.is_set():
            if task.done():
                return task.result()
            assert loop.time() < deadline, "the server's feed never ended"
            await asyncio.sleep(0.02)
        await asyncio.to_thread(server.wait_delivered, timeout_s)
        collector.stop()
        return await asyncio.wait_for(task, timeout_s)

    try:
        stats = asyncio.run(run())
    finally:
        writer.close()
        dead.close()
    return stats, out, dead


@pytest.fixture
def collect_from():
    return collect
