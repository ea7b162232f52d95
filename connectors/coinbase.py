"""Coinbase Advanced Trade messages to canonical ticks.

The live feed differs from Coinbase's prose docs (docs/exchange-protocols.md): there is no
``client_id``, ``heartbeat_counter`` is an integer, prices and sizes are decimal *strings*, and the
ticker fields are ``best_bid_quantity``/``volume_24_h``. This parser accepts both spellings of a
number (string or JSON number), never ``eval``s anything, and reports every problem as a
:class:`Reject` (a counted reason, a detail and the raw payload) instead of raising, so that the
collector can keep the message in a dead-letter sink and still do its sequence accounting.

A ticker becomes one canonical tick (``tickflow.connectors.base.CANONICAL_TICK_SCHEMA``):
``product_id`` -> ``symbol``, ``best_bid_quantity`` -> ``best_bid_size``, ``best_ask_quantity`` ->
``best_ask_size``, ``volume_24_h`` -> ``volume_24h``, envelope ``sequence_num`` -> ``sequence``,
envelope ``timestamp`` (truncated to microseconds) -> ``timestamp``; ``last_size`` is null
because the ticker channel has none.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA

EXCHANGE = "coinbase"
DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"
#: The seed's product list (the quick start collects these).
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "DOGE-USD", "XRP-USD",
                    "AVAX-USD", "DOT-USD", "LINK-USD", "LTC-USD", "BCH-USD", "UNI-USD",
                    "ATOM-USD", "XLM-USD")
#: Channels a client may subscribe to, and the envelope channel each one's data arrives on.
SUBSCRIPTION_CHANNELS = {"ticker": "ticker", "ticker_batch": "ticker_batch",
                         "heartbeats": "heartbeats", "level2": "l2_data",
                         "market_trades": "market_trades", "candles": "candles",
                         "status": "status", "user": "user",
                         "futures_balance_summary": "futures_balance_summary"}
KNOWN_CHANNELS = frozenset(SUBSCRIPTION_CHANNELS.values()) | {"subscriptions"}
TICKER_CHANNELS = frozenset({"ticker", "ticker_batch"})
TICK_FIELDS = tuple(CANONICAL_TICK_SCHEMA.names)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ticker fields that may be absent (ticker_batch omits best bid/ask), in canonical order:
# best_bid, best_ask, best_bid_size, best_ask_size, volume_24h
_OPTIONAL_FIELDS = ("best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity",
                    "volume_24_h")


@dataclass(frozen=True)
class Reject:
    """A message (or one ticker inside it) that cannot be used, and why.

    ``reason`` is a short counted category: ``malformed_json``, ``not_an_object``,
    ``error_frame``, ``unknown_channel``, ``missing_field``, ``bad_number``,
    ``bad_timestamp``, ``bad_shape``, ``too_deep`` (JSON nested past the decoder's limit).
    """

    reason: str
    detail: str
    payload: str


@dataclass
class Frame:
    """One parsed server message: its envelope, the ticks it carried and what was rejected."""

    channel: str | None = None
    sequence_num: int | None = None
    timestamp_us: int | None = None
    ticks: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    heartbeat_counter: int | None = None
    error_message: str | None = None
    subscriptions: dict[str, list[str]] | None = None
    # venues whose sequence is per stream (a symbol's trade ids) rather than per connection:
    # the stream's name, and the last number when one frame covers a run of them
    sequence_stream: str | None = None
    sequence_last: int | None = None


class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_timestamp_us(text: Any) -> int:
    """RFC 3339 text (``Z`` or an offset, 0-9 fractional digits) to epoch microseconds.

    Digits past the sixth are truncated, never rounded, so that a tick never moves forward in
    time. Raises ``ValueError`` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 string, found {text!r}")
    s = text.strip()
    tz = "+00:00"
    if s[-1:] in ("Z", "z"):
        s = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        s, tz = s[:-6], s[-6:]
    base, dot, frac = s.partition(".")
    if dot and not (frac.isdigit() and frac.isascii()):
        raise ValueError(f"bad fraction of a second in {text!r}")
    micros = int((frac + "000000")[:6]) if dot else 0
    try:
        return _epoch_seconds(base + tz) * 1_000_000 + micros
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(text: str) -> int:
    # a feed sends many messages per second: the datetime parse is done once per second
    delta = datetime.fromisoformat(text) - _EPOCH
    return delta.days * 86_400 + delta.seconds


def format_timestamp_us(us: int) -> str:
    """Epoch microseconds as ISO 8601 with six fractional digits and ``Z``."""
    dt = _EPOCH + timedelta(microseconds=us)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000:06d}Z"


def _number(value: Any, name: str) -> float:
    kind = type(value)
    if kind is str or kind is float or kind is int:
        try:
            x = float(value)
        except (ValueError, OverflowError):  # OverflowError: an integer past float's range
            raise _Bad("bad_number", f"{name}: not a number: {str(value)[:40]!r}") from None
        if x - x == 0.0:  # finite: inf - inf and nan - nan are nan
            return x
        raise _Bad("bad_number", f"{name}: not a finite number: {str(value)[:40]!r}")
    raise _Bad("bad_number", f"{name}: expected a decimal string or number, found "
               f"{str(value)[:40]!r}")


INT64_MAX = 2**63 - 1


def _integer(value: Any, name: str, limit: int = INT64_MAX) -> int:
    # ``limit``: the number must fit the int64 column it is written to (a 30-digit sequence
    # number would otherwise stop the writer, and every tick after it)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) < 20 \
            and int(value) <= limit:
        return int(value)
    raise _Bad("bad_number", f"{name}: expected an integer from 0 to {limit}, found "
               f"{str(value)[:40]!r}")


def ticker_to_tick(ticker: Any, timestamp_us: int, sequence: int | None) -> dict[str, Any]:
    """One ``tickers[]`` entry as a canonical tick dict (``timestamp`` in epoch μs)."""
    if not isinstance(ticker, dict):
        raise _Bad("bad_shape", f"ticker: expected an object, found {type(ticker).__name__}")
    symbol = ticker.get("product_id")
    if not isinstance(symbol, str) or not symbol:
        raise _Bad("missing_field", "ticker: missing product_id")
    if "price" not in ticker:
        raise _Bad("missing_field", f"ticker {symbol}: missing price")
    get = ticker.get
    optional = [None if (v := get(name)) is None else _number(v, name)
                for name in _OPTIONAL_FIELDS]
    # key order = schema order, so the JSON value reads like the schema
    return {"timestamp": timestamp_us, "symbol": symbol, "exchange": EXCHANGE,
            "price": _number(ticker["price"], "price"), "best_bid": optional[0],
            "best_ask": optional[1], "best_bid_size": optional[2], "best_ask_size": optional[3],
            "last_size": None, "volume_24h": optional[4], "sequence": sequence}


def _ticker_events(frame: Frame, message: dict[str, Any], raw: str) -> None:
    events = message.get("events")
    if not isinstance(events, list):
        frame.rejects.append(Reject("missing_field" if events is None else "bad_shape",
                                    "events: expected a list", raw))
        return
    if frame.timestamp_us is None:
        frame.rejects.append(Reject("missing_field", "timestamp: a ticker frame needs the "
                                    "envelope timestamp (the tick time)", raw))
        return
    for event in events:
        tickers = event.get("tickers") if isinstance(event, dict) else None
        if not isinstance(tickers, list):
            frame.rejects.append(Reject("bad_shape", "events[]: expected an object with a "
                                        "tickers list", json.dumps(event)))
            continue
        for ticker in tickers:
            try:
                frame.ticks.append(ticker_to_tick(ticker, frame.timestamp_us,
                                                  frame.sequence_num))
            except _Bad as bad:
                payload = json.dumps({"channel": frame.channel,
                                      "sequence_num": frame.sequence_num,
                                      "timestamp": message.get("timestamp"),
                                      "ticker": ticker})
                frame.rejects.append(Reject(bad.reason, bad.detail, payload))


def _heartbeat(frame: Frame, message: dict[str, Any]) -> None:
    events = message.get("events")
    if isinstance(events, list) and events and isinstance(events[0], dict):
        counter = events[0].get("heartbeat_counter")
        try:
            frame.heartbeat_counter = None if counter is None else _integer(counter, "counter")
        except _Bad:
            frame.heartbeat_counter = None


NOT_JSON = object()  # what load_json_frame returns for a frame that is not JSON


def load_json_frame(raw: str | bytes, frame: Frame) -> tuple[str, Any]:
    """A frame's text and its decoded JSON; on bad JSON the reject is added to ``frame`` and
    the message is ``NOT_JSON``. Shared by every exchange's parser."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        return text, json.loads(text)
    except ValueError as exc:
        frame.rejects.append(Reject("malformed_json", f"not JSON: {exc}", text))
    except RecursionError:  # nested past the interpreter's limit: hostile, never a tick
        frame.rejects.append(Reject("too_deep", "JSON nested too deeply to decode", text))
    return text, NOT_JSON


def parse_frame(raw: str | bytes) -> Frame:
    """Parse one WebSocket text frame; never raises for bad content (see ``Frame.rejects``)."""
    frame = Frame()
    text, message = load_json_frame(raw, frame)
    if message is NOT_JSON:
        return frame
    if not isinstance(message, dict):
        frame.rejects.append(Reject("not_an_object",
                                    f"expected a JSON object, found {type(message).__name__}",
                                    text))
        return frame
    if message.get("type") == "error":
        frame.error_message = str(message.get("message", ""))
        frame.rejects.append(Reject("error_frame", frame.error_message, text))
        return frame
    channel = message.get("channel")
    frame.channel = channel if isinstance(channel, str) else None
    try:
        frame.sequence_num = _integer(message["sequence_num"], "sequence_num")
    except KeyError:
        frame.rejects.append(Reject("missing_field", "sequence_num: missing", text))
        return frame
    except _Bad as bad:
        frame.rejects.append(Reject(bad.reason, bad.detail, text))
        return frame
    if frame.channel is None:
        frame.rejects.append(Reject("missing_field", "channel: missing", text))
        return frame
    if "timestamp" in message:
        try:
            frame.timestamp_us = parse_timestamp_us(message["timestamp"])
        except ValueError as exc:
            frame.rejects.append(Reject("bad_timestamp", f"timestamp: {exc}", text))
            return frame
    if channel in TICKER_CHANNELS:
        _ticker_events(frame, message, text)
    elif channel == "heartbeats":
        _heartbeat(frame, message)
    elif channel == "subscriptions":
        events = message.get("events")
        if isinstance(events, list) and events and isinstance(events[0], dict):
            frame.subscriptions = events[0].get("subscriptions")
    elif channel not in KNOWN_CHANNELS:
        frame.rejects.append(Reject("unknown_channel", f"channel {channel!r} is not a "
                                    "Coinbase Advanced Trade channel", text))
    return frame


def tick_to_json(tick: dict[str, Any]) -> str:
    """The Kafka/JSON Lines value of a tick: canonical names, ISO 8601 ``timestamp`` with Z."""
    out = dict(tick)
    out["timestamp"] = format_timestamp_us(tick["timestamp"])
    return json.dumps(out, separators=(",", ":"))


def ticks_to_table(ticks: list[dict[str, Any]]) -> pa.Table:
    """Canonical tick dicts as a table in ``CANONICAL_TICK_SCHEMA``."""
    columns = {name: [t[name] for t in ticks] for name in TICK_FIELDS}
    return pa.Table.from_pydict(columns, schema=CANONICAL_TICK_SCHEMA)


def subscribe_message(channel: str, products: list[str] | tuple[str, ...],
                      jwt: str | None = None, kind: str = "subscribe") -> dict[str, Any]:
    """One (un)subscribe request: Coinbase takes one channel per message."""
    message: dict[str, Any] = {"type": kind, "product_ids": list(products), "channel": channel}
    if jwt is not None:
        message["jwt"] = jwt
    return message
