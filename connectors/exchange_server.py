"""A real WebSocket server on loopback that speaks an exchange's market-data protocol.

Why: the collector must be tested (and demonstrated offline) against the same protocol the
production feed speaks, including its failures, without network. :class:`LoopbackServer` owns
the generic part (its own event loop in a thread, per-connection sequence numbers, a shared
market cursor, pacing, fault injection, a delivery check); a protocol subclass such as
``tickflow.connectors.coinbase_server.CoinbaseExchangeServer`` says how to answer subscriptions and
frame messages, so that other venues (Binance, Kraken) can reuse the machinery.

The market is a list of recorded (or synthetic) frames that every connection walks from the
point the feed had reached when it subscribed, so a client that reconnects continues where the
market is, as it would live. Faults are injected on the first ``faulty_connections``
connections only, so a test can check that the collector recovers and loses nothing.

Command line (offline demos, ``serve_cli``): ``run-job serve coinbase [--frames FILE] [--port 8765]
[--speed 1x|10x|max] [--loop]`` plus the fault flags of :class:`Faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

INJECTION_KINDS = ("malformed_json", "unknown_channel", "missing_field", "bad_number",
                   "string_numbers", "error_frame", "deeply_nested", "binary_garbage")
# hostile frames that are the same on every venue (no venue parser may crash on them)
HOSTILE_FRAMES: dict[str, str | bytes] = {
    "deeply_nested": "[" * 5000 + "]" * 5000,
    "binary_garbage": b"\xff\xfe\x00\x9c{\"channel\":\x80",
}


@dataclass
class Faults:
    """What goes wrong, and on which connections (the first ``faulty_connections``).

    Attributes:
        disconnect_after: close the connection (code 1011) after this many data frames.
        silence_after: after this many data frames send nothing at all (no heartbeats either)
            and keep the socket open: a dead feed that only a watchdog notices.
        heartbeats_stop_after: stop heartbeats after this many, data keeps flowing.
        skip_sequence: per-connection sequence numbers never used (a gap in ``sequence_num``).
        duplicate_sequence: sequence numbers whose frame is sent twice.
        inject: market frame index -> kind (see ``INJECTION_KINDS``), sent before that frame,
            once, whatever the connection.
        numbers_as_json: ticker numbers as JSON numbers instead of the feed's decimal strings.
        send_delay_s: pause before every data frame (a slow feed).
        faulty_connections: how many connections, in order, get the per-connection faults.
    """

    disconnect_after: int | None = None
    silence_after: int | None = None
    heartbeats_stop_after: int | None = None
    skip_sequence: frozenset[int] = frozenset()
    duplicate_sequence: frozenset[int] = frozenset()
    inject: dict[int, str] = field(default_factory=dict)
    numbers_as_json: bool = False
    send_delay_s: float = 0.0
    faulty_connections: int = 1

    def __post_init__(self) -> None:
        bad = sorted(set(self.inject.values()) - set(INJECTION_KINDS))
        if bad:
            msg = f"unknown injection kind(s) {bad}; expected one of {INJECTION_KINDS}"
            raise ValueError(msg)


@dataclass
class MarketFrame:
    """One frame of the market: its channel, the products it concerns, its message."""

    channel: str
    products: frozenset[str]
    timestamp_us: int
    message: dict[str, Any] | None  # parsed only for small frames we may rewrite
    text: str


@dataclass
class Connection:
    """Server-side state of one client connection."""

    number: int
    ws: ServerConnection
    is_faulty: bool
    seq: int = 0
    data_frames: int = 0
    heartbeats: int = 0
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    is_silent: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)  # logged once really sent
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    last_request: float = 0.0  # monotonic time of the last (un)subscribe


def parse_speed(text: str | float) -> float:
    """``1x``/``10x``/``2.5`` -> a factor; ``max`` -> 0 (no pacing)."""
    if isinstance(text, int | float):
        return float(text)
    s = text.strip().lower()
    if s in ("max", "0", "0x"):
        return 0.0
    try:
        value = float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        msg = f"speed: expected 1x, 10x, 2.5 or max, found {text!r}"
        raise ValueError(msg) from None
    if value <= 0:
        msg = f"speed: expected a factor > 0 or max, found {text!r}"
        raise ValueError(msg)
    return value


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LoopbackServer:
    """Generic replay server: an asyncio WebSocket server in its own thread (or loop).

    Subclasses implement :meth:`on_client_message` and :meth:`frame_for` (and may override
    :meth:`heartbeat`). Use as a context manager from synchronous code (tests, demos), or
    ``await start()``/``await stop()`` inside an event loop.

    Args:
        frames: the market, in order.
        host, port: where to listen (port 0: a free port; see ``url``).
        speed: replay pace relative to the frames' timestamps; 0 sends as fast as the client
            reads (TCP backpressure paces it).
        loop: start over at the end instead of going quiet (``feed_exhausted`` is then never
            set).
        heartbeat_interval_s: heartbeat period on connections that subscribed to them.
        subscribe_timeout_s: a connection that sends nothing this long gets an error and a close.
        settle_s: the feed starts once a connection has made no request for this long, so
            that one-channel-per-message subscribes all land before the market moves.
        faults: what goes wrong (:class:`Faults`).
        write_limit: the send buffer's high-water mark in bytes (small = early backpressure).
    """

    def __init__(self, frames: list[MarketFrame], *, host: str = "127.0.0.1", port: int = 0,
                 speed: float = 0.0, loop: bool = False, heartbeat_interval_s: float = 1.0,
                 subscribe_timeout_s: float = 5.0, settle_s: float = 0.25,
                 faults: Faults | None = None, write_limit: int = 32_768):
        self.frames = frames
        self.host, self.port = host, port
        self.speed = speed
        self.loop = loop
        self.heartbeat_interval_s = heartbeat_interval_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.settle_s = settle_s
        self.faults = faults or Faults()
        self.write_limit = write_limit
        self.position = 0  # the market cursor: frames before it have been sent
        self.connection_count = 0
        self.sent_frames = 0
        self.send_wait_s = 0.0
        self.injected: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.sent_log: list[dict[str, Any]] = []
        self.feed_exhausted = threading.Event()
        self._connections: dict[int, Connection] = {}
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pace_origin: tuple[float, int] | None = None
        self._injected_at: set[int] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> LoopbackServer:
        self._loop = asyncio.get_running_loop()
        self._server = await serve(self._handle, self.host, self.port, max_size=None,
                                   write_limit=self.write_limit, compression=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def __enter__(self) -> LoopbackServer:
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-exchange", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def wait_delivered(self, timeout_s: float = 30.0) -> None:
        """Block until every open connection answered a ping sent after all its frames.

        A pong proves that the client's WebSocket library has read everything sent before.
        """
        async def ping_all() -> None:
            waiters = []
            for conn in list(self._connections.values()):
                with contextlib.suppress(ConnectionClosed):
                    async with conn.lock:
                        waiters.append(await conn.ws.ping())
            for waiter in waiters:
                with contextlib.suppress(ConnectionClosed):
                    await waiter

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(ping_all(), self._loop).result(timeout_s)

    # ------------------------------------------------------------------ protocol hooks

    async def on_client_message(self, conn: Connection, message: Any, raw: str) -> None:
        raise NotImplementedError

    def frame_for(self, conn: Connection, frame: MarketFrame, seq: int) -> str | None:
        """The text to send ``conn`` for a market frame (None: not subscribed)."""
        raise NotImplementedError

    def heartbeat(self, conn: Connection, seq: int) -> str | None:
        return None

    def injection(self, conn: Connection, kind: str, seq: int) -> tuple[str, bool]:
        """A faulty message of ``kind``; the flag says whether it uses a sequence number."""
        raise NotImplementedError

    # ------------------------------------------------------------------ machinery

    async def send(self, conn: Connection, build: Any) -> bool:
        """Send ``build(seq)`` with the connection's next sequence number, applying faults."""
        async with conn.lock:
            if conn.is_silent:
                return False
            faulty = conn.is_faulty
            while faulty and conn.seq in self.faults.skip_sequence:
                conn.seq += 1
            try:
                text = build(conn.seq)
                if text is None:
                    return False
                started = time.perf_counter()
                await conn.ws.send(text)
                self.sent_log.extend(conn.pending)
                if faulty and conn.seq in self.faults.duplicate_sequence:
                    await conn.ws.send(text)
                self.send_wait_s += time.perf_counter() - started
                conn.seq += 1
                self.sent_frames += 1
                return True
            finally:
                conn.pending.clear()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connection_count += 1
        number = self.connection_count
        conn = Connection(number, ws, is_faulty=number <= self.faults.faulty_connections)
        self._connections[number] = conn
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                raw = await asyncio.wait_for(ws.recv(), self.subscribe_timeout_s)
            except TimeoutError:
                await ws.send(json.dumps({"type": "error",
                                          "message": "subscribe or unsubscribe required"}))
                await ws.close(1008, "subscribe or unsubscribe required")
                return
            tasks = [asyncio.create_task(self._feed(conn)),
                     asyncio.create_task(self._heartbeats(conn))]
            while True:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                try:
                    message = json.loads(text)
                except ValueError:
                    message = None
                if isinstance(message, dict):
                    self.received.append(message)
                conn.last_request = time.monotonic()
                await self.on_client_message(conn, message, text)
                raw = await ws.recv()
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._connections.pop(number, None)

    async def _heartbeats(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._heartbeat_loop(conn)

    async def _heartbeat_loop(self, conn: Connection) -> None:
        limit = self.faults.heartbeats_stop_after if conn.is_faulty else None
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if limit is not None and conn.heartbeats >= limit:
                return
            if await self.send(conn, lambda seq: self.heartbeat(conn, seq)):
                conn.heartbeats += 1

    def _pace_delay(self, frame: MarketFrame) -> float:
        if self.speed <= 0:
            return 0.0
        if self._pace_origin is None:
            self._pace_origin = (time.monotonic(), frame.timestamp_us)
        wall0, ts0 = self._pace_origin
        due = wall0 + (frame.timestamp_us - ts0) / 1e6 / self.speed
        return max(0.0, due - time.monotonic())

    async def _feed(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._feed_loop(conn)

    async def _feed_loop(self, conn: Connection) -> None:
        await conn.started.wait()
        # clients subscribe one channel per message: let them finish before the market moves
        while (quiet := time.monotonic() - conn.last_request) < self.settle_s:
            await asyncio.sleep(self.settle_s - quiet)
        faults = self.faults
        pos = self.position
        while True:
            if pos >= len(self.frames):
                if not self.loop or not self.frames:
                    self.feed_exhausted.set()
                    return
                pos, self._pace_origin = 0, None
            frame = self.frames[pos]
            delay = self._pace_delay(frame) + faults.send_delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            kind = faults.inject.get(pos)
            if kind is not None and pos not in self._injected_at:
                self._injected_at.add(pos)
                await self._inject(conn, kind)
            if await self.send(conn, lambda seq, f=frame: self.frame_for(conn, f, seq)):
                conn.data_frames += 1
            pos += 1
            self.position = max(self.position, pos)
            if conn.is_faulty and faults.disconnect_after is not None \
                    and conn.data_frames >= faults.disconnect_after:
                await conn.ws.close(1011, "injected disconnect")
                return
            if conn.is_faulty and faults.silence_after is not None \
                    and conn.data_frames >= faults.silence_after:
                conn.is_silent = True
                return

    async def _inject(self, conn: Connection, kind: str) -> None:
        self.injected.append(kind)
        async with conn.lock:
            try:
                hostile = HOSTILE_FRAMES.get(kind)
                text, uses_seq = (hostile, False) if hostile is not None else \
                    self.injection(conn, kind, conn.seq)
                await conn.ws.send(text)
                self.sent_log.extend(conn.pending)
            finally:
                conn.pending.clear()
            if uses_seq:
                conn.seq += 1
