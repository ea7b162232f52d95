"""The Kraken WebSocket v2 protocol for the loopback exchange server.

Answers like docs/exchange-protocols.md: a ``status`` message first, one acknowledgement
per subscribed symbol (``{"method": "subscribe", "result": {...}, "success": true, ...}``, or
``success: false`` with an ``error`` for an unknown channel), ``{"method": "pong"}`` to a
``ping``, ``{"channel": "heartbeat"}`` about once a second, ticker and trade messages with JSON
numbers and ``BTC/USD`` symbols. The recorded Kraken capture the tests replay is the v1 protocol:
:func:`load_frames` converts its ticker and trade arrays to v2 messages (``XBT`` -> ``BTC``,
receive time as the ticker timestamp, trade ids numbered per pair from 1 since v1 has none).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tickflow.connectors.coinbase import format_timestamp_us
from tickflow.connectors.exchange_server import Connection, LoopbackServer, MarketFrame, now_rfc3339
from tickflow.connectors.venue_simulator import DEFAULT_VENUE_SYMBOLS, venue_config, venue_quotes

_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def _v2_symbol(pair: str) -> str:
    base, _, quote = pair.partition("/")
    return f"{_ALIASES.get(base, base)}/{_ALIASES.get(quote, quote)}"


def _frame(channel: str, kind: str, entries: list[dict[str, Any]], ts_us: int) -> MarketFrame:
    message = {"channel": channel, "type": kind, "data": entries}
    symbols = frozenset(e["symbol"] for e in entries)
    return MarketFrame(channel, symbols, ts_us, message, json.dumps(message))


def load_frames(path: str | Path) -> list[MarketFrame]:
    """v1 ticker and trade frames of a cryptofeed capture as v2 market frames."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    frames: list[MarketFrame] = []
    trade_ids: dict[str, int] = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("t") != "recv":
                continue
            message = json.loads(record["data"])
            if not isinstance(message, list) or message[-2] not in ("ticker", "trade"):
                continue
            ts = int(record["ts"] * 1e6)
            symbol = _v2_symbol(message[-1])
            payload = message[1]
            if message[-2] == "ticker":
                frames.append(_frame("ticker", "update", [{
                    "symbol": symbol, "bid": float(payload["b"][0]),
                    "bid_qty": float(payload["b"][2]), "ask": float(payload["a"][0]),
                    "ask_qty": float(payload["a"][2]), "last": float(payload["c"][0]),
                    "volume": float(payload["v"][1]), "vwap": float(payload["p"][1]),
                    "low": float(payload["l"][1]), "high": float(payload["h"][1]),
                    "timestamp": format_timestamp_us(ts)}], ts))
            else:
                entries = []
                for price, qty, when, side, order_type, _ in payload:
                    trade_ids[symbol] = trade_ids.get(symbol, 0) + 1
                    entries.append({"symbol": symbol, "side": "buy" if side == "b" else "sell",
                                    "price": float(price), "qty": float(qty),
                                    "ord_type": "market" if order_type == "m" else "limit",
                                    "trade_id": trade_ids[symbol],
                                    "timestamp": format_timestamp_us(round(float(when) * 1e6))})
                frames.append(_frame("trade", "update", entries, ts))
    return frames


def synthetic_frames(products: Sequence[str] = DEFAULT_VENUE_SYMBOLS, *, trades_every: int = 0,
                     **settings: Any) -> list[MarketFrame]:
    """Ticker frames of the simulated venue ``kraken`` (``settings`` go to
    :class:`~connectors.venue_simulator.VenueSimulatorConfig`); ``BTC-USD`` -> ``BTC/USD``.
    With ``trades_every`` n, a trade frame (ids contiguous per pair) follows every n-th quote."""
    table = venue_quotes(venue_config("kraken", products, **settings))
    frames = []
    trade_ids: dict[str, int] = {}
    for i, row in enumerate(table.to_pylist()):
        symbol = row["symbol"].replace("-", "/")
        ts = int(row["timestamp"].timestamp() * 1e6)
        stamp = format_timestamp_us(ts)
        frames.append(_frame("ticker", "update", [{
            "symbol": symbol, "bid": row["best_bid"], "bid_qty": row["best_bid_size"],
            "ask": row["best_ask"], "ask_qty": row["best_ask_size"], "last": row["price"],
            "volume": 1000.0, "timestamp": stamp}], ts))
        if trades_every and i % trades_every == 0:
            trade_ids[symbol] = trade_ids.get(symbol, 0) + 1
            frames.append(_frame("trade", "update", [{
                "symbol": symbol, "side": "buy", "price": row["best_ask"], "qty": 0.01,
                "ord_type": "market", "trade_id": trade_ids[symbol], "timestamp": stamp}], ts))
    return frames


class KrakenExchangeServer(LoopbackServer):
    """Kraken v2 public market data on loopback.

    ``drop_trades``: per-connection indices of trade frames not sent on faulty connections
    (a gap in the trade ids). ``restamp`` stamps each entry with the send time.
    """

    def __init__(self, frames: list[MarketFrame] | None = None, *, restamp: bool = False,
                 drop_trades: frozenset[int] = frozenset(), **kwargs: Any):
        super().__init__(frames if frames is not None else synthetic_frames(), **kwargs)
        self.restamp = restamp
        self.drop_trades = drop_trades
        self._trades_seen: dict[int, int] = {}
        self._status_sent: set[int] = set()

    async def on_client_message(self, conn: Connection, message: Any, raw: str) -> None:
        if conn.number not in self._status_sent:
            self._status_sent.add(conn.number)
            await conn.ws.send(json.dumps({"channel": "status", "type": "update", "data": [{
                "version": "2.0.10", "system": "online", "api_version": "v2",
                "connection_id": 8488217682369066242 + conn.number}]}))
        method = message.get("method") if isinstance(message, dict) else None
        req_id = message.get("req_id") if isinstance(message, dict) else None
        now = now_rfc3339()
        if method == "ping":
            await conn.ws.send(json.dumps({"method": "pong", "req_id": req_id,
                                           "time_in": now, "time_out": now_rfc3339()}))
            return
        params = message.get("params") if isinstance(message, dict) else None
        channel = params.get("channel") if isinstance(params, dict) else None
        symbols = params.get("symbol") if isinstance(params, dict) else None
        if method not in ("subscribe", "unsubscribe") or channel not in ("ticker", "trade") \
                or not isinstance(symbols, list):
            await conn.ws.send(json.dumps({
                "method": method or "", "error": f"Channel {channel} not supported"
                if method in ("subscribe", "unsubscribe") else "Method not found",
                "success": False, "req_id": req_id, "time_in": now,
                "time_out": now_rfc3339()}))
            return
        subscribed = conn.subscriptions.setdefault(channel, set())
        for symbol in symbols:
            if method == "subscribe":
                subscribed.add(str(symbol))
            else:
                subscribed.discard(str(symbol))
            await conn.ws.send(json.dumps({
                "method": method, "result": {"channel": channel, "snapshot": True,
                                             "symbol": symbol},
                "success": True, "req_id": req_id, "time_in": now,
                "time_out": now_rfc3339()}))
        if any(conn.subscriptions.values()):
            conn.started.set()

    def frame_for(self, conn: Connection, frame: MarketFrame, seq: int) -> str | None:
        wanted = conn.subscriptions.get(frame.channel)
        if not wanted or not frame.products & wanted:
            return None
        if frame.channel == "trade":
            index = self._trades_seen.get(conn.number, 0)
            self._trades_seen[conn.number] = index + 1
            if conn.is_faulty and index in self.drop_trades:
                return None
        assert frame.message is not None
        message = frame.message
        if self.restamp:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            message = {**message, "data": [{**e, "timestamp": stamp} for e in message["data"]]}
        if frame.channel == "ticker":
            for entry in message["data"]:
                conn.pending.append({"symbol": entry["symbol"], "price": entry["last"],
                                     "timestamp": entry.get("timestamp"),
                                     "connection": conn.number, "sequence_num": seq})
        return json.dumps(message) if message is not frame.message else frame.text

    def heartbeat(self, conn: Connection, seq: int) -> str | None:
        return json.dumps({"channel": "heartbeat"})

    def injection(self, conn: Connection, kind: str, seq: int) -> tuple[str, bool]:
        entry = {"symbol": "BTC/USD", "bid": 1.0, "bid_qty": 1.0, "ask": 1.1, "ask_qty": 1.0,
                 "last": 1.05, "volume": 1.0}
        if kind == "malformed_json":
            return '{"channel":"ticker","type":"update","data":[{"symbol":', False
        if kind == "error_frame":
            return json.dumps({"method": "subscribe", "error": "injected error",
                               "success": False}), False
        if kind == "unknown_channel":
            return json.dumps({"channel": "ticker_v9", "type": "update", "data": []}), False
        if kind == "missing_field":
            entry.pop("bid")
        elif kind == "bad_number":
            entry["bid"] = "65,083.67"
        return json.dumps({"channel": "ticker", "type": "update", "data": [entry]}), False
