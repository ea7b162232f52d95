"""The Binance spot public-stream protocol for the loopback exchange server.

Answers like docs/exchange-protocols.md: the combined endpoint, a live
``{"method": "SUBSCRIBE", "params": [...], "id": n}`` answered by ``{"result": null, "id": n}``
(an unknown method or a malformed request by ``{"code": 2, "msg": ...}``), frames wrapped as
``{"stream": "btcusdt@bookTicker", "data": {...}}``, no application heartbeat (WebSocket pings
only). The market is a recorded cryptofeed capture (:func:`load_frames`) or quotes of the
multi-venue simulator (:func:`synthetic_frames`), whose ``trade`` frames carry contiguous ids.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tickflow.connectors.exchange_server import Connection, LoopbackServer, MarketFrame
from tickflow.connectors.venue_simulator import DEFAULT_VENUE_SYMBOLS, venue_config, venue_quotes


def load_frames(path: str | Path) -> list[MarketFrame]:
    """The ``recv`` frames of a cryptofeed capture (``.gz`` allowed), timed by receive time."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    frames = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("t") != "recv":
                continue
            message = json.loads(record["data"])
            stream = message.get("stream", "") if isinstance(message, dict) else ""
            frames.append(MarketFrame(stream, frozenset({stream}), int(record["ts"] * 1e6),
                                      message, record["data"]))
    return frames


def synthetic_frames(products: Sequence[str] = DEFAULT_VENUE_SYMBOLS, *,
                     symbol_map: dict[str, str] | None = None, trades_every: int = 0,
                     **settings: Any) -> list[MarketFrame]:
    """``bookTicker`` frames of the simulated venue ``binance`` (``settings`` go to
    :class:`~connectors.venue_simulator.VenueSimulatorConfig`); venue symbols through the
    inverse of ``symbol_map``, else USD markets quoted as USDT pairs as Binance lists them
    (``BTC-USD`` -> ``BTCUSDT``). With ``trades_every`` n, a
    ``trade`` frame (contiguous ids per symbol) follows every n-th quote."""
    inverse = {common: venue for venue, common in (symbol_map or {}).items()}
    table = venue_quotes(venue_config("binance", products, **settings))
    rows = table.to_pylist()
    frames = []
    trade_ids: dict[str, int] = {}
    for i, row in enumerate(rows):
        base, _, quote = row["symbol"].partition("-")
        venue = inverse.get(row["symbol"]) or base + ("USDT" if quote == "USD" else quote)
        ts = int(row["timestamp"].timestamp() * 1e6)
        data = {"u": row["sequence"], "s": venue, "b": f"{row['best_bid']:.6f}",
                "B": f"{row['best_bid_size']:.6f}", "a": f"{row['best_ask']:.6f}",
                "A": f"{row['best_ask_size']:.6f}"}
        stream = f"{venue.lower()}@bookTicker"
        message = {"stream": stream, "data": data}
        frames.append(MarketFrame(stream, frozenset({stream}), ts, message, json.dumps(message)))
        if trades_every and i % trades_every == 0:
            trade_id = trade_ids.get(venue, 1000)
            trade_ids[venue] = trade_id + 1
            stream = f"{venue.lower()}@trade"
            trade = {"e": "trade", "E": ts // 1000, "s": venue, "t": trade_id,
                     "p": f"{row['best_ask']:.6f}", "q": "0.01", "T": ts // 1000,
                     "m": False, "M": True}
            message = {"stream": stream, "data": trade}
            frames.append(MarketFrame(stream, frozenset({stream}), ts, message,
                                      json.dumps(message)))
    return frames


class BinanceExchangeServer(LoopbackServer):
    """Binance spot streams on loopback.

    ``drop_trades``: per-connection indices of ``trade`` frames not sent on faulty
    connections (a gap in the trade ids, as a lost message would make).
    """

    def __init__(self, frames: list[MarketFrame] | None = None, *,
                 drop_trades: frozenset[int] = frozenset(), **kwargs: Any):
        super().__init__(frames if frames is not None else synthetic_frames(), **kwargs)
        self.drop_trades = drop_trades
        self._trades_seen: dict[int, int] = {}

    async def on_client_message(self, conn: Connection, message: Any, raw: str) -> None:
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params") if isinstance(message, dict) else None
        request_id = message.get("id") if isinstance(message, dict) else None
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS") or \
                (method != "LIST_SUBSCRIPTIONS" and not isinstance(params, list)):
            await conn.ws.send(json.dumps({"code": 2, "msg": "Invalid request",
                                           "id": request_id}))
            return
        streams = conn.subscriptions.setdefault("streams", set())
        if method == "SUBSCRIBE":
            streams.update(str(p) for p in params)
        elif method == "UNSUBSCRIBE":
            streams.difference_update(str(p) for p in params)
        result = sorted(streams) if method == "LIST_SUBSCRIPTIONS" else None
        await conn.ws.send(json.dumps({"result": result, "id": request_id}))
        if streams:
            conn.started.set()

    def frame_for(self, conn: Connection, frame: MarketFrame, seq: int) -> str | None:
        wanted = conn.subscriptions.get("streams") or set()
        # Binance stream names are case-insensitive in the symbol part
        if frame.channel not in wanted and frame.channel.lower() not in \
                {s.lower() for s in wanted}:
            return None
        if frame.channel.endswith("@trade"):
            index = self._trades_seen.get(conn.number, 0)
            self._trades_seen[conn.number] = index + 1
            if conn.is_faulty and index in self.drop_trades:
                return None
        data = frame.message.get("data") if isinstance(frame.message, dict) else None
        if isinstance(data, dict) and "b" in data and "a" in data:
            conn.pending.append({"symbol": data.get("s"), "price": data.get("b"),
                                 "connection": conn.number, "sequence_num": seq})
        return frame.text

    def injection(self, conn: Connection, kind: str, seq: int) -> tuple[str, bool]:
        base = {"u": 1, "s": "BTCUSDT", "b": "1.0", "B": "1.0", "a": "1.1", "A": "1.0"}
        if kind == "malformed_json":
            return '{"stream":"btcusdt@bookTicker","data":{"u":', False
        if kind == "error_frame":
            return json.dumps({"code": -1003, "msg": "injected error"}), False
        if kind == "unknown_channel":
            return json.dumps({"stream": "btcusdt@mystery", "data": {"e": "mystery"}}), False
        bad = dict(base)
        if kind == "missing_field":
            bad.pop("b")
        elif kind == "bad_number":
            bad["b"] = "65,083.67"
        return json.dumps({"stream": "btcusdt@bookTicker", "data": bad}), False
