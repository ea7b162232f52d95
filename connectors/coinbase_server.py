"""The Coinbase Advanced Trade protocol for the loopback exchange server.

Answers like the production feed (docs/exchange-protocols.md): a subscribe is due
within the subscribe timeout, one channel per (un)subscribe, a cumulative ``subscriptions``
confirmation for each, heartbeats at 1 Hz with an integer counter, ``sequence_num`` from 0 per
connection across all channels, prices as decimal strings and no ``client_id``. The market is
recorded frames (:func:`load_frames`) or a synthetic ticker feed (:func:`synthetic_frames`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tickflow.connectors.coinbase import DEFAULT_PRODUCTS, SUBSCRIPTION_CHANNELS, parse_timestamp_us
from tickflow.connectors.exchange_server import Connection, LoopbackServer, MarketFrame, now_rfc3339

_SEQ_RE = re.compile(r'"sequence_num"\s*:\s*"?\d+"?')



def _frame_products(channel: str, message: dict[str, Any]) -> frozenset[str]:
    products: set[str] = set()
    for event in message.get("events") or []:
        if not isinstance(event, dict):
            continue
        if "product_id" in event:
            products.add(event["product_id"])
        for key in ("tickers", "trades", "candles"):
            for item in event.get(key) or []:
                if isinstance(item, dict) and "product_id" in item:
                    products.add(item["product_id"])
    return frozenset(products)


def market_frames(lines: Sequence[str]) -> list[MarketFrame]:
    """Recorded server frames (one JSON text each) as the market a server replays.

    The recorded ``subscriptions`` and ``heartbeats`` frames are left out: the server makes
    its own, per connection. Large frames (level2 snapshots) are kept as text and only their
    ``sequence_num`` is rewritten.
    """
    frames = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        message = json.loads(text)
        if isinstance(message, dict) and message.get("t") == "recv" and "data" in message:
            text = message["data"]  # a cryptofeed capture line
            message = json.loads(text)
        channel = message.get("channel", "")
        if channel in ("subscriptions", "heartbeats"):
            continue
        ts = parse_timestamp_us(message["timestamp"])
        small = len(text) < 65_536
        frames.append(MarketFrame(channel, _frame_products(channel, message), ts,
                                  message if small else None, text))
    return frames


def load_frames(path: str | Path) -> list[MarketFrame]:
    """Frames from a JSON Lines file (``.gz`` allowed): server frames or a cryptofeed capture."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return market_frames(f.readlines())


def synthetic_frames(products: Sequence[str] = DEFAULT_PRODUCTS, count: int = 1_000, *,
                     seed: int = 7, start: str = "2026-08-09T21:05:48.000000Z",
                     interval_ms: float = 10.0) -> list[MarketFrame]:
    """A deterministic ticker feed (random-walk prices), for demos and tests without data."""
    rng = random.Random(seed)
    t0 = parse_timestamp_us(start)
    state = {p: [100.0 * (i + 1), 1000.0] for i, p in enumerate(products)}
    lines = []
    for i in range(count):
        product = products[i % len(products)] if i < len(products) else rng.choice(products)
        price, volume = state[product]
        price = round(max(0.01, price * (1 + rng.gauss(0, 5e-4))), 2)
        volume += rng.random()
        state[product] = [price, volume]
        ts = t0 + int(i * interval_ms * 1000)
        stamp = datetime.fromtimestamp(ts // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        ticker = {"type": "ticker", "product_id": product, "price": f"{price:.2f}",
                  "volume_24_h": f"{volume:.8f}", "best_bid": f"{price - 0.01:.2f}",
                  "best_ask": f"{price + 0.01:.2f}",
                  "best_bid_quantity": f"{rng.random():.8f}",
                  "best_ask_quantity": f"{rng.random():.8f}"}
        event_type = "snapshot" if i < len(products) else "update"
        lines.append(json.dumps({"channel": "ticker",
                                 "timestamp": f"{stamp}.{ts % 1_000_000:06d}Z",
                                 "sequence_num": 0,
                                 "events": [{"type": event_type, "tickers": [ticker]}]}))
    return market_frames(lines)


def _numbers_to_json(ticker: dict[str, Any]) -> dict[str, Any]:
    out = dict(ticker)
    for key, value in ticker.items():
        if key not in ("type", "product_id") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


class CoinbaseExchangeServer(LoopbackServer):
    """The Coinbase Advanced Trade market-data protocol (docs/exchange-protocols.md).

    Subscribe within ``subscribe_timeout_s`` or get an error frame and a close; one channel per
    (un)subscribe; a cumulative ``subscriptions`` confirmation for each; a ticker ``snapshot``
    per product on subscribing once the market has a state for it; heartbeats at 1 Hz;
    ``sequence_num`` from 0 per connection across all channels. ``sent_ticks`` records every
    ticker sent (``symbol``, ``timestamp``, ``price`` text, ``connection``, ``sequence_num``),
    so a test can check that nothing sent was lost. ``require_jwt`` refuses a subscribe without
    a ``jwt`` field, as Coinbase does for authenticated channels.
    """

    def __init__(self, frames: list[MarketFrame] | None = None, *, restamp: bool = False,
                 require_jwt: bool = False, **kwargs: Any):
        super().__init__(frames if frames is not None else synthetic_frames(), **kwargs)
        self.restamp = restamp
        self.require_jwt = require_jwt
        self._last_ticker: dict[str, tuple[dict[str, Any], str]] = {}
        self._heartbeat_counter = 41_690

    @property
    def sent_ticks(self) -> list[dict[str, Any]]:
        """Every ticker entry a client was really sent (``symbol``, ``timestamp``, ``price``
        text, ``connection``, ``sequence_num``), in send order."""
        return self.sent_log

    def _envelope(self, channel: str, seq: int, events: list[Any], stamp: str | None) -> str:
        return json.dumps({"channel": channel,
                           "timestamp": now_rfc3339() if self.restamp or stamp is None else stamp,
                           "sequence_num": seq, "events": events})

    async def on_client_message(self, conn: Connection, message: Any, raw: str) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        channel = message.get("channel") if isinstance(message, dict) else None
        if kind not in ("subscribe", "unsubscribe") or channel not in SUBSCRIPTION_CHANNELS:
            await conn.ws.send(json.dumps({"type": "error", "message": "Failed to subscribe"
                                           if kind else "subscribe or unsubscribe required"}))
            return
        if self.require_jwt and not isinstance(message.get("jwt"), str):
            await conn.ws.send(json.dumps({"type": "error",
                                           "message": "authentication failure"}))
            await conn.ws.close(1008, "authentication failure")
            return
        products = message.get("product_ids") or []
        if channel == "heartbeats":
            products = ["heartbeats"]
        if kind == "subscribe":
            conn.subscriptions.setdefault(channel, set()).update(products)
        elif products and channel in conn.subscriptions:
            conn.subscriptions[channel].difference_update(products)
        else:
            conn.subscriptions.pop(channel, None)
        confirmation = {name: sorted(p) for name, p in conn.subscriptions.items() if p}
        await self.send(conn, lambda seq: self._envelope(
            "subscriptions", seq, [{"subscriptions": confirmation}], None))
        if kind == "subscribe" and channel == "ticker":
            for product in products:
                if product in self._last_ticker:
                    ticker, stamp = self._last_ticker[product]
                    await self.send(conn, lambda seq, t=ticker, s=stamp: self._ticker_text(
                        conn, seq, [{"type": "snapshot", "tickers": [t]}], s))
        if any(name != "heartbeats" for name in conn.subscriptions):
            conn.started.set()

    def _ticker_text(self, conn: Connection, seq: int, events: list[dict[str, Any]],
                     stamp: str) -> str:
        text = self._envelope("ticker", seq, events, stamp)
        sent_stamp = json.loads(text)["timestamp"] if self.restamp else stamp
        for event in events:
            for ticker in event.get("tickers", []):
                conn.pending.append({"symbol": ticker.get("product_id"),
                                     "timestamp": sent_stamp, "price": ticker.get("price"),
                                     "connection": conn.number, "sequence_num": seq})
        if self.faults.numbers_as_json:
            message = json.loads(text)
            for event in message["events"]:
                event["tickers"] = [_numbers_to_json(t) for t in event.get("tickers", [])]
            text = json.dumps(message)
        return text

    def frame_for(self, conn: Connection, frame: MarketFrame, seq: int) -> str | None:
        subscription = next((name for name, channel in SUBSCRIPTION_CHANNELS.items()
                             if channel == frame.channel), frame.channel)
        wanted = conn.subscriptions.get(subscription)
        if not wanted or (frame.products and not frame.products & wanted):
            return None
        if frame.channel == "ticker" and frame.message is not None:
            stamp = frame.message["timestamp"]
            for event in frame.message.get("events", []):
                for ticker in event.get("tickers", []):
                    self._last_ticker[ticker["product_id"]] = (ticker, stamp)
            return self._ticker_text(conn, seq, frame.message["events"], stamp)
        text = _SEQ_RE.sub(f'"sequence_num":{seq}', frame.text, count=1)
        if self.restamp and frame.message is not None:
            message = json.loads(text)
            message["timestamp"] = now_rfc3339()
            text = json.dumps(message)
        return text

    def heartbeat(self, conn: Connection, seq: int) -> str | None:
        if "heartbeats" not in conn.subscriptions:
            return None
        self._heartbeat_counter += 1
        now = datetime.now(UTC)
        return self._envelope("heartbeats", seq, [{
            "current_time": f"{now:%Y-%m-%d %H:%M:%S.%f} +0000 UTC m=+{time.monotonic():.9f}",
            "heartbeat_counter": self._heartbeat_counter}], None)

    def injection(self, conn: Connection, kind: str, seq: int) -> tuple[str, bool]:
        product, (ticker, stamp) = next(iter(self._last_ticker.items()), (
            "BTC-USD", ({"type": "ticker", "product_id": "BTC-USD", "price": "1.0"},
                        now_rfc3339())))
        if kind == "malformed_json":
            return '{"channel":"ticker","timestamp":"' + stamp + '","sequence_num":', False
        if kind == "error_frame":
            return json.dumps({"type": "error", "message": "injected error"}), False
        if kind == "unknown_channel":
            return self._envelope("ticker_v9", seq, [{"type": "update"}], stamp), True
        bad = dict(ticker)
        if kind == "missing_field":
            bad.pop("price", None)
        elif kind == "bad_number":
            bad["price"] = "65,083.67"
        message = json.loads(self._envelope(
            "ticker", seq, [{"type": "update", "tickers": [bad]}], stamp))
        if kind == "string_numbers":  # every number as text, even sequence_num: still valid
            message["sequence_num"] = str(seq)
            conn.pending.append({"symbol": product, "timestamp": message["timestamp"],
                                 "price": bad.get("price"), "connection": conn.number,
                                 "sequence_num": seq})
        return json.dumps(message), True
