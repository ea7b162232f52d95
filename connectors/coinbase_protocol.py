"""Coinbase Advanced Trade as an :class:`~connectors.exchange_protocol.ExchangeProtocol`.

One channel per subscribe message (a fresh JWT in each when credentials are set), a
connection-wide ``sequence_num`` from 0, and 1 Hz ``heartbeats`` frames for the watchdog
(docs/exchange-protocols.md). The parser is :func:`tickflow.connectors.coinbase.parse_frame`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickflow.connectors.coinbase import (
    DEFAULT_PRODUCTS,
    DEFAULT_URL,
    Frame,
    parse_frame,
    subscribe_message,
)
from tickflow.connectors.exchange_protocol import (
    ExchangeProtocol,
    SubscribeRequest,
    exchange_protocol,
)


@exchange_protocol("coinbase")
class CoinbaseProtocol(ExchangeProtocol):
    """Coinbase Advanced Trade market data (ticks already in common naming)."""

    default_url = DEFAULT_URL
    default_products = DEFAULT_PRODUCTS
    default_channels = ("ticker", "heartbeats")
    heartbeat_channel = "heartbeats"

    def subscribe_messages(self, request: SubscribeRequest) -> list[dict[str, Any]]:
        return [subscribe_message(channel, request.products,
                                  jwt=request.jwt() if request.jwt is not None else None)
                for channel in request.channels]

    def parse(self, raw: str | bytes, received_us: int,
              symbols: Mapping[str, str]) -> Frame:
        return parse_frame(raw)
