"""What differs between exchanges for the collector, as one object registered by name.

Why: reconnecting with backoff, the heartbeat watchdog, sequence accounting, dead letters and
clean shutdown are the same for every venue (``tickflow.connectors.collector.Collector``); only the
endpoint, the subscribe messages, the frame parser and how liveness is signalled differ. A venue
is added by registering an :class:`ExchangeProtocol` under its name
(``@exchange_protocol("binance")``); ``run-job collect NAME`` and the ``kind: NAME`` job
sources look it up, never branch on the name.

Symbols: every venue's ticks carry the common naming (``BTC-USD``). A venue symbol is mapped by
an explicit ``symbol_map`` first (``{"BTCUSDT": "BTC-USD"}`` states that USDT is taken as USD),
else mechanically (``BTCUSDT`` -> ``BTC-USDT``, ``XBT/USD`` -> ``BTC-USD``); USDT is never
silently renamed USD.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tickflow.connectors.coinbase import Frame

_PROTOCOLS: dict[str, ExchangeProtocol] = {}
# The built-in venues register on import of their module; naming the module here (not importing
# it) keeps the venue parsers, which import this module, free of an import cycle.
_BUILTIN_MODULES = {"binance": "tickflow.connectors.binance",
                    "coinbase": "tickflow.connectors.coinbase_protocol",
                    "kraken": "tickflow.connectors.kraken"}


@dataclass(frozen=True)
class SubscribeRequest:
    """What the collector wants from a venue: products in common naming, channels, mapping."""

    products: tuple[str, ...]
    channels: tuple[str, ...]
    symbol_map: Mapping[str, str]
    jwt: Callable[[], str] | None = None


class ExchangeProtocol:
    """One venue's wire protocol, as the collector needs it.

    Attributes:
        name: the registered name (also the ``exchange`` column of its ticks).
        default_url: the production endpoint.
        default_products: products collected when none are given (common naming).
        default_channels: channels subscribed by default.
        heartbeat_channel: frames on this channel prove the feed alive (the watchdog).
        any_message_is_alive: every frame, not only heartbeats, resets the watchdog (venues
            whose heartbeat is sent only while idle, or that rely on WebSocket pings).
    """

    name = ""
    default_url = ""
    default_products: tuple[str, ...] = ()
    default_channels: tuple[str, ...] = ()
    heartbeat_channel: str | None = None
    any_message_is_alive = False

    def connect_url(self, url: str, request: SubscribeRequest) -> str:
        """The URL to open (some venues put the streams in the path)."""
        return url

    def subscribe_messages(self, request: SubscribeRequest) -> list[dict[str, Any]]:
        """The JSON messages to send after connecting, in order."""
        raise NotImplementedError

    def parse(self, raw: str | bytes, received_us: int,
              symbols: Mapping[str, str]) -> Frame:
        """One text frame as a :class:`Frame`; never raises for bad content."""
        raise NotImplementedError


def exchange_protocol(name: str) -> Callable[[type[ExchangeProtocol]], type[ExchangeProtocol]]:
    """Register an :class:`ExchangeProtocol` subclass under ``name``."""

    def deco(cls: type[ExchangeProtocol]) -> type[ExchangeProtocol]:
        instance = cls()
        instance.name = name
        _PROTOCOLS[name] = instance
        return cls

    return deco


def get_protocol(name: str) -> ExchangeProtocol:
    """The registered protocol ``name``; ValueError listing the known ones otherwise."""
    if name not in _PROTOCOLS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _PROTOCOLS:
        msg = f"unknown exchange {name!r}; expected one of {', '.join(protocol_names())}"
        raise ValueError(msg)
    return _PROTOCOLS[name]


def protocol_names() -> list[str]:
    return sorted(set(_PROTOCOLS) | set(_BUILTIN_MODULES))


_QUOTES = ("USDT", "USDC", "BUSD", "TUSD", "FDUSD", "USD", "EUR", "GBP", "CHF", "JPY", "TRY",
           "BTC", "ETH", "BNB")
_ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def common_symbol(venue_symbol: str, symbol_map: Mapping[str, str]) -> str:
    """A venue symbol in common naming: the explicit map first, else a mechanical split.

    >>> common_symbol("BTCUSDT", {}), common_symbol("BTCUSDT", {"BTCUSDT": "BTC-USD"})
    ('BTC-USDT', 'BTC-USD')
    >>> common_symbol("XBT/USD", {})
    'BTC-USD'
    """
    mapped = symbol_map.get(venue_symbol)
    if mapped is not None:
        return mapped
    s = venue_symbol.upper()
    for sep in ("/", "-", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            return f"{_ASSET_ALIASES.get(base, base)}-{_ASSET_ALIASES.get(quote, quote)}"
    for quote in _QUOTES:
        if s.endswith(quote) and len(s) > len(quote):
            base = s[:-len(quote)]
            return f"{_ASSET_ALIASES.get(base, base)}-{quote}"
    return s


def venue_symbol(product: str, symbol_map: Mapping[str, str], *, separator: str,
                 upper: bool = True) -> str:
    """A common product (``BTC-USD``) as the venue spells it, through the inverse map."""
    for venue, common in symbol_map.items():
        if common == product:
            return venue
    text = product.replace("-", separator)
    return text.upper() if upper else text.lower()
