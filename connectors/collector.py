"""The exchange collector: a venue's WebSocket -> canonical ticks -> Kafka, Parquet or JSONL.

Its command line (``tickflow-collect``, ``run-job collect``) is
:mod:`tickflow.connectors.collector_cli`.

Why it is built this way: the live feed drops connections, skips and repeats messages and sends
things the docs do not describe (the exchanges' protocol notes). So the collector reconnects with
exponential backoff and full jitter and resubscribes; checks ``sequence_num`` per connection
(gaps and duplicates are counted; duplicates dropped); reconnects when heartbeats stop; keeps
every message it cannot use in a dead-letter sink with the reason; and on Ctrl+C or SIGTERM
closes the socket, drains what the socket already received, and closes the writer, so the
output holds every tick received and a Parquet file is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickflow.connectors.coinbase import Frame, tick_to_json
from tickflow.connectors.coinbase_auth import CoinbaseCredentials
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.exchange_protocol import SubscribeRequest, get_protocol
from tickflow.connectors.tick_checks import tick_problem
from tickflow.connectors.tick_writers import TickWriter
from tickflow.engine.errors import SourceError

LOG = logging.getLogger("tickflow.collector")
# websockets logs every frame at DEBUG, subscribe messages (and their JWT) included: its
# logger stays at INFO whatever the user's level, so a credential never reaches a log.
_WS_LOG = logging.getLogger("tickflow.collector.websocket")
_WS_LOG.setLevel(logging.INFO)
DEFAULT_TOPIC = "coinbase-ticker"


@dataclass
class CollectorSettings:
    """How to connect and when to give up; defaults suit the production feed.

    Attributes:
        exchange: the registered exchange protocol (``tickflow.connectors.exchange_protocol``).
        url: the WebSocket endpoint (None: the exchange's production endpoint).
        products: products to subscribe, in common naming (None: the exchange's defaults).
        channels: channels to subscribe (None: the exchange's defaults; Coinbase's
            ``heartbeats`` keeps the connection open and drives the watchdog).
        symbol_map: venue symbol -> common symbol (``{"BTCUSDT": "BTC-USD"}``), explicit.
        heartbeat_timeout_s: reconnect when no heartbeat came for this long.
        open_timeout_s: connect and handshake timeout.
        backoff_base_s / backoff_cap_s: reconnect delay ``uniform(0, min(cap, base * 2**n))``
            after ``n`` consecutive failed connections (full jitter).
        max_failures: give up after this many consecutive failed connections (None: never).
        subscribe_interval_s: pause between subscribe messages (Coinbase allows 8 per second
            unauthenticated).
        max_ticks / duration_s: stop after this many ticks or seconds (None: run until stopped).
    """

    url: str | None = None
    products: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    exchange: str = "coinbase"
    symbol_map: dict[str, str] = field(default_factory=dict)
    heartbeat_timeout_s: float = 10.0
    open_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_failures: int | None = None
    subscribe_interval_s: float = 0.15
    max_ticks: int | None = None
    duration_s: float | None = None
    credentials: CoinbaseCredentials | None = None


@dataclass
class CollectorStats:
    """What happened; ``summary`` is the collector's last line."""

    messages: int = 0
    ticks: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    connections: int = 0
    failed_connects: int = 0
    heartbeats: int = 0
    heartbeat_timeouts: int = 0
    error_frames: int = 0
    dead_letters: int = 0
    bad_ticks: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    exchange: str = "coinbase"

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    def summary(self) -> str:
        return (f"{self.exchange} collector: {self.messages:,} messages, {self.ticks:,} ticks, "
                f"{self.gaps:,} gaps ({self.missing:,} messages missing), "
                f"{self.duplicates:,} duplicates, {self.reconnects:,} reconnects "
                f"({self.heartbeat_timeouts:,} heartbeat timeouts, {self.failed_connects:,} "
                f"failed connects), {self.error_frames:,} error frames, "
                f"{self.dead_letters:,} dead letters ({self.bad_ticks:,} ticks failing "
                f"the tick-quality checks)")


class Collector:
    """One collector run: connect, subscribe, parse, check, write; again after a disconnect."""

    def __init__(self, settings: CollectorSettings, writer: TickWriter,
                 dead_letters: DeadLetters):
        self.settings = settings
        self.protocol = get_protocol(settings.exchange)
        self.url = settings.url or self.protocol.default_url
        self.request = SubscribeRequest(
            products=settings.products or self.protocol.default_products,
            channels=settings.channels or self.protocol.default_channels,
            symbol_map=dict(settings.symbol_map),
            jwt=settings.credentials.jwt if settings.credentials is not None else None)
        self.writer = writer
        self.dead_letters = dead_letters
        self.stats = CollectorStats(exchange=self.protocol.name)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the run to end: the socket closes, received messages are drained and written."""
        self._stop.set()

    async def run(self) -> CollectorStats:
        """Collect until stopped (``stop``, ``max_ticks``, ``duration_s``); never loses a tick
        it received. Raises SourceError after ``max_failures`` consecutive failed connects."""
        s = self.settings
        failures = 0
        timers = [asyncio.create_task(self._flush_timer())]
        if s.duration_s is not None:
            timers.append(asyncio.create_task(self._stop_after(s.duration_s)))
        try:
            while not self._stop.is_set():
                received = await self._connect_once()
                if self._stop.is_set():
                    break
                failures = 0 if received else failures + 1
                if s.max_failures is not None and failures >= s.max_failures:
                    msg = (f"{self.protocol.name} collector: {failures} consecutive "
                           f"connection attempts to {self.url} failed; giving up")
                    raise SourceError(msg)
                delay = random.uniform(0, min(s.backoff_cap_s, s.backoff_base_s * 2 ** failures))
                LOG.info("reconnecting in %.2f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            for timer in timers:
                timer.cancel()
            self.stats.dead_letters = self.dead_letters.total
            self.dead_letters.flush()
        return self.stats

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop()

    async def _flush_timer(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.writer.maybe_flush()
            self.dead_letters.flush()

    async def _connect_once(self) -> bool:
        """One connection's life; True when it delivered at least one message."""
        s = self.settings
        url = self.protocol.connect_url(self.url, self.request)
        connecting = asyncio.ensure_future(connect(
            url, open_timeout=s.open_timeout_s, max_size=None, max_queue=64, close_timeout=2,
            compression=None, ping_interval=20, ping_timeout=20, logger=_WS_LOG))
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():  # stopped while connecting: nothing was received yet
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            return False
        try:
            ws = connecting.result()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.stats.failed_connects += 1
            if isinstance(exc, InvalidURI):
                msg = f"{self.protocol.name} collector: bad url {url!r}"
                raise SourceError(msg) from None
            LOG.warning("cannot connect to %s: %s", url, exc or type(exc).__name__)
            return False
        self.stats.connections += 1
        LOG.info("connected to %s (connection %d)", url, self.stats.connections)
        closer = asyncio.create_task(self._close_on_stop(ws))
        before = self.stats.messages
        try:
            await self._subscribe(ws)
            await self._receive(ws)
        except ConnectionClosed as exc:
            if not self._stop.is_set():
                LOG.warning("connection closed by the server: %s", exc)
        finally:
            closer.cancel()
            await ws.close()
        return self.stats.messages > before

    async def _close_on_stop(self, ws: ClientConnection) -> None:
        await self._stop.wait()
        await ws.close()

    async def _subscribe(self, ws: ClientConnection) -> None:
        s, request = self.settings, self.request
        # built one at a time: a Coinbase JWT is fresh in each message
        for i, message in enumerate(self.protocol.subscribe_messages(request)):
            if i and s.subscribe_interval_s > 0:
                await asyncio.sleep(s.subscribe_interval_s)
            await ws.send(_dumps(message))
        LOG.info("subscribed to %s for %d products%s", ", ".join(request.channels),
                 len(request.products), " (authenticated)" if s.credentials is not None else "")

    async def _receive(self, ws: ClientConnection) -> None:
        """Read until the connection ends (drains what was received after a stop)."""
        s, protocol = self.settings, self.protocol
        watch_heartbeats = protocol.any_message_is_alive or \
            protocol.heartbeat_channel in self.request.channels
        symbols = self.request.symbol_map
        expected: dict[str | None, int] = {}
        last_heartbeat = time.monotonic()
        connection = self.stats.connections
        while True:
            timeout = None
            if watch_heartbeats and not self._stop.is_set():
                timeout = max(0.0, last_heartbeat + s.heartbeat_timeout_s - time.monotonic())
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                self.stats.heartbeat_timeouts += 1
                LOG.warning("no heartbeat for %.1f s on connection %d; reconnecting",
                            s.heartbeat_timeout_s, connection)
                return
            self.stats.messages += 1
            try:
                frame = protocol.parse(raw, time.time_ns() // 1000, symbols)
            except Exception as exc:  # a parser bug must not end collection: keep the frame
                self.dead_letters.add("parser_error", raw, detail=f"{type(exc).__name__}: "
                                      f"{str(exc)[:200]}", connection=connection)
                LOG.warning("unparsable frame kept as a dead letter (%s)", type(exc).__name__)
                continue
            seq = frame.sequence_num
            if seq is not None:
                # connection-wide numbers start at 0; a stream's (trade ids) where first seen
                stream = frame.sequence_stream
                want = expected.get(stream, 0 if stream is None else seq)
                if seq < want:
                    self.stats.duplicates += 1
                    LOG.debug("duplicate sequence %d (expected %d): dropped", seq, want)
                    continue
                if seq > want:
                    self.stats.gaps += 1
                    self.stats.missing += seq - want
                    LOG.warning("sequence gap on connection %d%s: expected %d, got %d",
                                connection, f" ({stream})" if stream else "", want, seq)
                last = frame.sequence_last
                expected[stream] = (seq if last is None else max(seq, last)) + 1
            if frame.channel is not None:
                self.stats.by_channel[frame.channel] = \
                    self.stats.by_channel.get(frame.channel, 0) + 1
            if frame.channel is not None and frame.channel == protocol.heartbeat_channel:
                self.stats.heartbeats += 1
            if protocol.any_message_is_alive or frame.channel == protocol.heartbeat_channel:
                last_heartbeat = time.monotonic()
            if frame.error_message is not None:
                self.stats.error_frames += 1
                LOG.warning("error frame from the server: %s", frame.error_message[:200])
            for reject in frame.rejects:
                self.dead_letters.add(reject.reason, reject.payload, detail=reject.detail,
                                      connection=connection, sequence_num=seq)
            if frame.ticks:
                self._drop_bad_ticks(frame, connection)
            ticks = frame.ticks
            if ticks and s.max_ticks is not None:  # exactly max_ticks, even mid-frame
                ticks = ticks[:max(0, s.max_ticks - self.stats.ticks)]
            if ticks:
                self.writer.write(ticks)
                self.stats.ticks += len(ticks)
            if s.max_ticks is not None and self.stats.ticks >= s.max_ticks \
                    and not self._stop.is_set():
                self.stop()

    def _drop_bad_ticks(self, frame: Frame, connection: int) -> None:
        """Keep ticks failing the tick-quality checks as dead letters, out of the output."""
        good = []
        for tick in frame.ticks:
            reason = tick_problem(tick)
            if reason is None:
                good.append(tick)
                continue
            self.stats.bad_ticks += 1
            self.dead_letters.add(reason, tick_to_json(tick), connection=connection,
                                  sequence_num=frame.sequence_num)
        if len(good) != len(frame.ticks):
            frame.ticks = good


def _dumps(message: dict[str, Any]) -> str:
    import json

    return json.dumps(message, separators=(",", ":"))
