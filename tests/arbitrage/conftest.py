"""Run a venue collector in-process against a loopback server until its feed is delivered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.collector.conftest import collect
from tickflow.connectors.collector import CollectorStats
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.exchange_server import LoopbackServer
from tickflow.connectors.tick_writers import TickWriter


def collect_venue(server: LoopbackServer, exchange: str, tmp_path: Path, *,
                  writer: TickWriter | None = None, timeout_s: float = 30.0,
                  **settings: Any) -> tuple[CollectorStats, list[dict[str, Any]], DeadLetters]:
    """Collect until the server's feed is exhausted and delivered; the ticks written."""
    settings.setdefault("products", ("BTC-USD", "ETH-USD"))
    stats, out, dead = collect(server, tmp_path, writer=writer, timeout_s=timeout_s,
                               exchange=exchange, **settings)
    ticks = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return stats, ticks, dead
