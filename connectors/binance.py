"""Binance spot public streams (``bookTicker``, ``trade``, ``aggTrade``) to canonical ticks.

Formats: docs/exchange-protocols.md. Frames arrive raw (``{...}``) or wrapped by the
combined endpoint (``{"stream": "btcusdt@bookTicker", "data": {...}}``); both are accepted.

Mapping (stated, not assumed):

- ``bookTicker`` -> a quote tick: ``best_bid``/``best_ask`` (``b``/``a``), sizes (``B``/``A``),
  ``price`` = the mid ((bid + ask) / 2, as the spot book ticker carries no last price),
  ``sequence`` = ``u`` (the book update id). Spot ``bookTicker`` has **no event time**: the tick
  is stamped with the local receive time (``received_us``).
- ``trade``/``aggTrade`` -> a trade tick: ``price`` = ``p``, ``last_size`` = ``q``,
  ``timestamp`` = ``T`` (ms), ``sequence`` = the trade id ``t`` (``a`` for aggTrade), bid/ask
  null. ``trade`` ids are contiguous per symbol, so the collector counts gaps per symbol.
- symbols: ``BTCUSDT`` -> ``BTC-USDT`` unless ``symbol_map`` says otherwise
  (``{"BTCUSDT": "BTC-USD"}`` states that USDT is taken as USD).

Anything unusable is a :class:`~connectors.coinbase.Reject`, never an exception.
"""

from __future__ import annotations

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
)
from tickflow.connectors.exchange_protocol import (
    ExchangeProtocol,
    SubscribeRequest,
    common_symbol,
    exchange_protocol,
    venue_symbol,
)

EXCHANGE = "binance"
DEFAULT_URL = "wss://stream.binance.com:9443"
DEFAULT_PRODUCTS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
#: stream suffix of each channel the collector may ask for
STREAMS = {"bookTicker": "bookTicker", "trade": "trade", "aggTrade": "aggTrade"}
#: streams we receive but do not turn into ticks (counted by channel, not dead-lettered)
OTHER_STREAMS = ("depth", "kline", "ticker", "miniTicker", "avgPrice")


def _quote_tick(data: dict[str, Any], received_us: int,
                symbols: Mapping[str, str]) -> dict[str, Any]:
    for name in ("s", "b", "a", "B", "A"):
        if name not in data:
            raise _Bad("missing_field", f"bookTicker: missing {name!r}")
    bid, ask = _number(data["b"], "b"), _number(data["a"], "a")
    update_id = data.get("u")
    return {"timestamp": received_us, "symbol": common_symbol(str(data["s"]), symbols),
            "exchange": EXCHANGE, "price": (bid + ask) / 2, "best_bid": bid, "best_ask": ask,
            "best_bid_size": _number(data["B"], "B"), "best_ask_size": _number(data["A"], "A"),
            "last_size": None, "volume_24h": None,
            "sequence": None if update_id is None else _integer(update_id, "u")}


def _trade_tick(data: dict[str, Any], symbols: Mapping[str, str], id_field: str,
                ) -> dict[str, Any]:
    for name in ("s", "p", "q", "T", id_field):
        if name not in data:
            raise _Bad("missing_field", f"{data.get('e')}: missing {name!r}")
    return {"timestamp": _integer(data["T"], "T", INT64_MAX // 1000) * 1000,
            "symbol": common_symbol(str(data["s"]), symbols), "exchange": EXCHANGE,
            "price": _number(data["p"], "p"), "best_bid": None, "best_ask": None,
            "best_bid_size": None, "best_ask_size": None,
            "last_size": _number(data["q"], "q"), "volume_24h": None,
            "sequence": _integer(data[id_field], id_field)}


def parse_frame(raw: str | bytes, received_us: int,
                symbols: Mapping[str, str] | None = None) -> Frame:
    """One Binance text frame as a :class:`Frame`; never raises for bad content."""
    symbols = symbols or {}
    frame = Frame(timestamp_us=received_us)
    text, message = load_json_frame(raw, frame)
    if message is NOT_JSON:
        return frame
    if not isinstance(message, dict):
        frame.rejects.append(Reject("not_an_object", "expected a JSON object, found "
                                    f"{type(message).__name__}", text))
        return frame
    if "id" in message and ("result" in message or "error" in message):
        if message.get("error") is not None:
            frame.error_message = str(message["error"])
            frame.rejects.append(Reject("error_frame", frame.error_message, text))
        else:
            frame.channel = "response"
        return frame
    if "code" in message and "msg" in message:  # {"code": 2, "msg": "Invalid request"}
        frame.error_message = f"{message['code']}: {message['msg']}"
        frame.rejects.append(Reject("error_frame", frame.error_message, text))
        return frame
    stream = message.get("stream")
    data = message.get("data") if "data" in message else message
    if not isinstance(data, dict):
        frame.rejects.append(Reject("bad_shape", "data: expected an object", text))
        return frame
    event = data.get("e")
    if event is None and "u" in data and "b" in data and "a" in data:
        event = "bookTicker"
    if event is None and isinstance(stream, str):
        event = stream.partition("@")[2].split("@")[0] or None
    frame.channel = event if isinstance(event, str) else None
    try:
        if event == "bookTicker":
            frame.ticks.append(_quote_tick(data, received_us, symbols))
        elif event in ("trade", "aggTrade"):
            id_field = "t" if event == "trade" else "a"
            tick = _trade_tick(data, symbols, id_field)
            frame.ticks.append(tick)
            if event == "trade":  # contiguous per symbol: the collector counts gaps
                frame.sequence_num = tick["sequence"]
                frame.sequence_stream = f"trade:{data['s']}"
        elif event == "serverShutdown":
            frame.channel = "serverShutdown"
        elif (isinstance(event, str) and event.startswith(OTHER_STREAMS)) or \
                event in ("depthUpdate", "24hrTicker", "24hrMiniTicker"):
            pass
        else:
            frame.rejects.append(Reject("unknown_channel", f"not a Binance stream event: "
                                        f"{event!r}", text))
    except _Bad as bad:
        frame.rejects.append(Reject(bad.reason, bad.detail, text))
    return frame


@exchange_protocol(EXCHANGE)
class BinanceProtocol(ExchangeProtocol):
    """Binance spot: combined-stream endpoint, one live ``SUBSCRIBE`` for every stream.

    Binance sends WebSocket pings (answered by the client library) and no application
    heartbeat, so any frame proves the feed alive and the watchdog is an idle timeout.
    """

    default_url = DEFAULT_URL
    default_products = DEFAULT_PRODUCTS
    default_channels = ("bookTicker",)
    any_message_is_alive = True

    def connect_url(self, url: str, request: SubscribeRequest) -> str:
        # the combined endpoint wraps frames with their stream name
        return url if url.rstrip("/").endswith("/stream") else url.rstrip("/") + "/stream"

    def subscribe_messages(self, request: SubscribeRequest) -> list[dict[str, Any]]:
        streams = [f"{venue_symbol(p, request.symbol_map, separator='', upper=False).lower()}"
                   f"@{STREAMS.get(channel, channel)}"
                   for channel in request.channels for p in request.products]
        return [{"method": "SUBSCRIBE", "params": streams, "id": 1}]

    def parse(self, raw: str | bytes, received_us: int,
              symbols: Mapping[str, str]) -> Frame:
        return parse_frame(raw, received_us, symbols)
