"""Run a venue collector in-process against a loopback server until its feed is delivered."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from connectors.collector import Collector, CollectorSettings, CollectorStats
from connectors.dead_letter import DeadLetters
from connectors.exchange_server import LoopbackServer
from connectors.tick_writers import JsonlTickWriter, TickWriter


def collect_venue(server: LoopbackServer, exchange: str, tmp_path: Path, *,
                  writer: TickWriter | None = None, timeout_s: float = 30.0,
                  **settings: Any) -> tuple[CollectorStats, list[dict[str, Any]], DeadLetters]:
    """Collect until the server's feed is exhausted and delivered; the ticks written."""
    out = tmp_path / f"{exchange}.jsonl"
    writer = writer or JsonlTickWriter(out)
    dead = DeadLetters(tmp_path / f"{exchange}-dead.jsonl", source=exchange)
    options: dict[str, Any] = {"exchange": exchange, "url": server.url,
                               "products": ("BTC-USD", "ETH-USD"), "heartbeat_timeout_s": 5.0,
                               "subscribe_interval_s": 0.0, "backoff_base_s": 0.05,
                               "backoff_cap_s": 0.2, **settings}
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
    ticks = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return stats, ticks, dead
