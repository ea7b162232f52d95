"""Kraken spot WebSocket v2 ``ticker``/``trade`` (and v1 captures) to canonical ticks.

Formats: docs/exchange-protocols.md. v2 messages are JSON objects with a ``channel``;
numbers are JSON numbers; symbols ``BTC/USD``. The recorded Kraken capture the tests replay is
the frozen **v1** protocol (arrays ``[channel_id, payload, "ticker", "XBT/USD"]``), so the
parser reads v1 ticker/trade arrays too (``XBT`` -> ``BTC``), at the cost of a few lines.

Mapping: ticker -> ``best_bid``/``best_ask`` (``bid``/``ask``), sizes (``bid_qty``/``ask_qty``),
``price`` = ``last``, ``volume_24h`` = ``volume``; ``timestamp`` = the entry's ``timestamp``
when present, else the local receive time (older v2 messages and all v1 tickers carry none).
trade -> ``price``, ``last_size`` = ``qty``, ``timestamp``, ``sequence`` = ``trade_id``
(sequential per pair: the collector counts gaps per symbol). ``BTC/USD`` -> ``BTC-USD``;
``symbol_map`` overrides (``{"BTC/USDT": "BTC-USD"}`` states that USDT is taken as USD).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tickflow.connectors.coinbase import (
    INT64_MAX,
    NOT_JSON,
    Frame,
    Reject,
    _Bad,
    _integer,
    _number,
    load_json_frame,
    parse_timestamp_us,
)
from tickflow.connectors.exchange_protocol import (
    ExchangeProtocol,
    SubscribeRequest,
    common_symbol,
    exchange_protocol,
    venue_symbol,
)

EXCHANGE = "kraken"
DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
CONTROL_CHANNELS = frozenset({"heartbeat", "status", "pong", "book", "ohlc", "instrument",
                              "level3"})


def _entry_time(entry: dict[str, Any], received_us: int) -> int:
    stamp = entry.get("timestamp")
    if stamp is None:
        return received_us
    try:
        return parse_timestamp_us(stamp)
    except ValueError as exc:
        raise _Bad("bad_timestamp", f"timestamp: {exc}") from None


def _ticker_tick(entry: Any, received_us: int, symbols: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _Bad("bad_shape", "ticker data[]: expected an object")
    for name in ("symbol", "bid", "ask", "last"):
        if name not in entry:
            raise _Bad("missing_field", f"ticker: missing {name!r}")
    get = entry.get
    optional = [None if (v := get(n)) is None else _number(v, n)
                for n in ("bid_qty", "ask_qty", "volume")]
    return {"timestamp": _entry_time(entry, received_us),
            "symbol": common_symbol(str(entry["symbol"]), symbols), "exchange": EXCHANGE,
            "price": _number(entry["last"], "last"), "best_bid": _number(entry["bid"], "bid"),
            "best_ask": _number(entry["ask"], "ask"), "best_bid_size": optional[0],
            "best_ask_size": optional[1], "last_size": None, "volume_24h": optional[2],
            "sequence": None}


def _trade_tick(entry: Any, received_us: int, symbols: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _Bad("bad_shape", "trade data[]: expected an object")
    for name in ("symbol", "price", "qty"):
        if name not in entry:
            raise _Bad("missing_field", f"trade: missing {name!r}")
    trade_id = entry.get("trade_id")
    return {"timestamp": _entry_time(entry, received_us),
            "symbol": common_symbol(str(entry["symbol"]), symbols), "exchange": EXCHANGE,
            "price": _number(entry["price"], "price"), "best_bid": None, "best_ask": None,
            "best_bid_size": None, "best_ask_size": None,
            "last_size": _number(entry["qty"], "qty"), "volume_24h": None,
            "sequence": None if trade_id is None else _integer(trade_id, "trade_id")}


def _v2(frame: Frame, message: dict[str, Any], text: str, received_us: int,
        symbols: Mapping[str, str]) -> None:
    if "method" in message:  # subscribe acks, pongs, errors
        frame.channel = "response"
        if message.get("success") is False or "error" in message:
            frame.error_message = str(message.get("error", "request failed"))
            frame.rejects.append(Reject("error_frame", frame.error_message, text))
        return
    channel = message.get("channel")
    if not isinstance(channel, str):
        frame.rejects.append(Reject("missing_field", "channel: missing", text))
        return
    frame.channel = channel
    if channel in CONTROL_CHANNELS:
        return
    if channel not in ("ticker", "trade"):
        frame.rejects.append(Reject("unknown_channel", f"channel {channel!r} is not a Kraken "
                                    "v2 channel", text))
        return
    data = message.get("data")
    if not isinstance(data, list):
        frame.rejects.append(Reject("missing_field" if data is None else "bad_shape",
                                    "data: expected a list", text))
        return
    build = _ticker_tick if channel == "ticker" else _trade_tick
    for entry in data:
        try:
            frame.ticks.append(build(entry, received_us, symbols))
        except _Bad as bad:
            frame.rejects.append(Reject(bad.reason, bad.detail,
                                        json.dumps({"channel": channel, "entry": entry})))
    ids = [t["sequence"] for t in frame.ticks if t["sequence"] is not None]
    pairs = {t["symbol"] for t in frame.ticks}
    if channel == "trade" and message.get("type") == "update" and ids and len(pairs) == 1:
        frame.sequence_num, frame.sequence_last = min(ids), max(ids)
        frame.sequence_stream = f"trade:{pairs.pop()}"


def _v1_time_us(value: Any) -> int:
    us = _number(value, "time") * 1e6
    if not 0 <= us <= INT64_MAX:
        raise _Bad("bad_timestamp", f"time: out of range: {str(value)[:40]!r}")
    return round(us)


def _v1(frame: Frame, message: list[Any], text: str, received_us: int,
        symbols: Mapping[str, str]) -> None:
    if len(message) < 4 or not isinstance(message[-2], str):
        frame.rejects.append(Reject("bad_shape", "v1 array: expected [id, payload, channel, "
                                    "pair]", text))
        return
    channel, pair, payload = message[-2], str(message[-1]), message[1]
    frame.channel = channel.split("-")[0]
    symbol = common_symbol(pair, symbols)
    try:
        if channel == "ticker":
            if not isinstance(payload, dict) or not all(k in payload for k in "abc"):
                raise _Bad("missing_field", "v1 ticker: needs a, b and c")
            volume = payload.get("v") or [None, None]
            frame.ticks.append({
                "timestamp": received_us, "symbol": symbol, "exchange": EXCHANGE,
                "price": _number(payload["c"][0], "c"), "best_bid": _number(payload["b"][0], "b"),
                "best_ask": _number(payload["a"][0], "a"),
                "best_bid_size": _number(payload["b"][2], "b"),
                "best_ask_size": _number(payload["a"][2], "a"), "last_size": None,
                "volume_24h": None if volume[1] is None else _number(volume[1], "v"),
                "sequence": None})
        elif channel == "trade":
            for row in payload:
                frame.ticks.append({
                    "timestamp": _v1_time_us(row[2]), "symbol": symbol,
                    "exchange": EXCHANGE, "price": _number(row[0], "price"), "best_bid": None,
                    "best_ask": None, "best_bid_size": None, "best_ask_size": None,
                    "last_size": _number(row[1], "volume"), "volume_24h": None,
                    "sequence": None})
    except (_Bad, IndexError, KeyError, TypeError, OverflowError) as exc:  # any shape at all
        reason = exc.reason if isinstance(exc, _Bad) else "bad_shape"
        frame.ticks.clear()
        frame.rejects.append(Reject(reason, f"v1 {channel}: {exc}", text))


def parse_frame(raw: str | bytes, received_us: int,
                symbols: Mapping[str, str] | None = None) -> Frame:
    """One Kraken text frame (v2 object, or v1 array/event) as a :class:`Frame`."""
    symbols = symbols or {}
    frame = Frame(timestamp_us=received_us)
    text, message = load_json_frame(raw, frame)
    if message is NOT_JSON:
        return frame
    if isinstance(message, list):
        _v1(frame, message, text, received_us, symbols)
    elif isinstance(message, dict) and "event" in message:  # v1 control messages
        frame.channel = "heartbeat" if message["event"] == "heartbeat" else "response"
        if message.get("status") == "error":
            frame.error_message = str(message.get("errorMessage", "error"))
            frame.rejects.append(Reject("error_frame", frame.error_message, text))
    elif isinstance(message, dict):
        _v2(frame, message, text, received_us, symbols)
    else:
        frame.rejects.append(Reject("not_an_object", "expected a JSON object or array, found "
                                    f"{type(message).__name__}", text))
    return frame


@exchange_protocol(EXCHANGE)
class KrakenProtocol(ExchangeProtocol):
    """Kraken v2: one subscribe per channel, ticker with ``event_trigger: bbo`` (a tick on
    every best bid/offer change, as arbitrage needs). Kraken sends ``heartbeat`` only while
    nothing else is sent, so any frame proves the feed alive (its guide: reconnect when
    nothing came for about 5 s)."""

    default_url = DEFAULT_URL
    default_products = DEFAULT_PRODUCTS
    default_channels = ("ticker",)
    heartbeat_channel = "heartbeat"
    any_message_is_alive = True

    def subscribe_messages(self, request: SubscribeRequest) -> list[dict[str, Any]]:
        symbols = [venue_symbol(p, request.symbol_map, separator="/") for p in request.products]
        out = []
        for i, channel in enumerate(request.channels, start=1):
            params: dict[str, Any] = {"channel": channel, "symbol": symbols, "snapshot": True}
            if channel == "ticker":
                params["event_trigger"] = "bbo"
            out.append({"method": "subscribe", "params": params, "req_id": i})
        return out

    def parse(self, raw: str | bytes, received_us: int,
              symbols: Mapping[str, str]) -> Frame:
        return parse_frame(raw, received_us, symbols)
