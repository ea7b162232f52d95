"""``kind: binance`` and ``kind: kraken``: a venue's live quotes straight into a job.

Why: the same as ``kind: coinbase`` (``tickflow.connectors.coinbase_source``), whose batching and
shutdown this reuses: the collector (reconnects with backoff, watchdog, gap counting, dead
letters) runs on its own event loop in a thread; only the exchange protocol differs. Symbols
arrive in common naming; ``symbol_map`` states any mapping such as USDT taken as USD.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tickflow.connectors.base import ConnectorConfig, RunContext, source
from tickflow.connectors.coinbase_source import CoinbaseSource
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.engine.durations import Seconds


class VenueSourceConfig(ConnectorConfig):
    """Live top-of-book quotes of one venue (its WebSocket, or a loopback server)."""

    url: str | None = Field(None, description="WebSocket endpoint (default: the venue's "
                                              "production endpoint; a loopback `run-job serve "
                                              "VENUE` for offline runs)")
    products: list[str] | None = Field(None, min_length=1,
                                       description="products in common naming (default: the "
                                                   "venue's list)")
    symbol_map: dict[str, str] = Field(default_factory=dict,
                                       description="venue symbol -> common symbol, e.g. "
                                                   "{BTCUSDT: BTC-USD} (USDT taken as USD: "
                                                   "stated here, never assumed)")
    trades: bool = Field(False, description="also subscribe trades (ticks with last_size)")
    max_ticks: int | None = Field(None, ge=1, description="end the run after this many ticks")
    duration_s: Seconds | None = Field(None, gt=0, description="end the run after this long")
    batch_rows: int = Field(1_000, ge=1, description="most ticks per batch handed to the job")
    linger_ms: int = Field(200, ge=1, le=60_000,
                           description="longest wait to fill a batch (latency vs throughput)")
    heartbeat_timeout_s: Seconds = Field(10.0, gt=0, description="reconnect after this long "
                                                               "without a message")
    max_failures: int | None = Field(None, ge=1, description="give up after this many "
                                                             "consecutive failed connects")
    dead_letter_path: str | None = Field(None, description="JSON Lines file of unusable "
                                                           "messages (default "
                                                           "out/VENUE_dead_letters.jsonl)")

    def expected_keys(self) -> int | None:
        return len(self.products) if self.products else None


class BinanceSourceConfig(VenueSourceConfig):
    """Live Binance spot ``bookTicker`` quotes."""

    kind: Literal["binance"] = "binance"


class KrakenSourceConfig(VenueSourceConfig):
    """Live Kraken v2 ``ticker`` quotes (``event_trigger: bbo``)."""

    kind: Literal["kraken"] = "kraken"


class VenueSource(CoinbaseSource):
    """A collector of the venue named by ``config.kind``, feeding the job."""

    def __init__(self, config: VenueSourceConfig, context: RunContext):  # type: ignore[override]
        super().__init__(config, context)  # type: ignore[arg-type]

    def _collector_parts(self) -> tuple[Any, DeadLetters]:
        from tickflow.connectors.collector import CollectorSettings

        c = self.config
        assert isinstance(c, VenueSourceConfig)
        channels = ("bookTicker",) if c.kind == "binance" else ("ticker",)
        channels += ("trade",) * c.trades
        settings = CollectorSettings(
            exchange=c.kind, url=c.url, products=tuple(c.products) if c.products else None,
            channels=channels, symbol_map=dict(c.symbol_map),
            heartbeat_timeout_s=c.heartbeat_timeout_s, max_failures=c.max_failures,
            max_ticks=c.max_ticks, duration_s=c.duration_s)
        dead = DeadLetters(c.dead_letter_path or f"out/{c.kind}_dead_letters.jsonl",
                           source=c.id or c.kind)
        return settings, dead


@source("binance", config=BinanceSourceConfig,
        summary="live Binance spot bookTicker quotes (WebSocket), reconnecting, into the job")
class BinanceSource(VenueSource):
    """Live Binance quotes."""


@source("kraken", config=KrakenSourceConfig,
        summary="live Kraken v2 ticker quotes (WebSocket), reconnecting, into the job")
class KrakenSource(VenueSource):
    """Live Kraken quotes."""
