"""``kind: coinbase``: live Coinbase tickers straight into a job, without Kafka in between.

Why: for a quick look at live features a Kafka broker is one moving part too many. The source
runs the collector (``tickflow.connectors.collector.Collector``: reconnects, sequence checks,
heartbeat watchdog, dead letters) on its own event loop in a thread and hands the job record
batches of canonical ticks, cut every ``batch_rows`` ticks or ``linger_ms``. A run ends after
``max_ticks`` or ``duration_s`` (or on Ctrl+C when neither is set). For capture-and-replay,
or several jobs on one feed, use the collector into Kafka and ``kind: kafka`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Source,
    source,
)
from tickflow.connectors.coinbase import DEFAULT_PRODUCTS, DEFAULT_URL, ticks_to_table
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.tick_writers import TickWriter
from tickflow.engine.durations import Seconds
from tickflow.engine.errors import SourceError

_DONE = object()


class CoinbaseSourceConfig(ConnectorConfig):
    """Live tickers from the Coinbase Advanced Trade WebSocket."""

    kind: Literal["coinbase"] = "coinbase"
    url: str = Field(DEFAULT_URL, description="WebSocket endpoint (a loopback "
                                              "`run-job serve coinbase` for offline runs)")
    products: list[str] = Field(list(DEFAULT_PRODUCTS), min_length=1,
                                description="product ids to subscribe")
    max_ticks: int | None = Field(None, ge=1, description="end the run after this many ticks")
    duration_s: Seconds | None = Field(None, gt=0, description="end the run after this long")
    batch_rows: int = Field(1_000, ge=1, description="most ticks per batch handed to the job")
    linger_ms: int = Field(200, ge=1, le=60_000,
                           description="longest wait to fill a batch (latency vs throughput)")
    heartbeat_timeout_s: Seconds = Field(10.0, gt=0,
                                       description="reconnect after this long without a "
                                                   "heartbeat")
    max_failures: int | None = Field(None, ge=1, description="give up after this many "
                                                             "consecutive failed connects")
    dead_letter_path: str | None = Field("out/coinbase_dead_letters.jsonl",
                                         description="JSON Lines file of unusable messages")

    def expected_keys(self) -> int | None:
        return len(self.products)


class _QueueWriter(TickWriter):
    """Hands ticks from the collector's thread to the job's."""

    def __init__(self, out: queue.Queue[Any]):
        self.out = out
        self.rows = 0

    def write(self, ticks: list[dict[str, Any]]) -> None:
        self.out.put(ticks)
        self.rows += len(ticks)

    def close(self) -> str:
        return f"coinbase source: {self.rows:,} ticks"


@source("coinbase", config=CoinbaseSourceConfig,
        summary="live Coinbase Advanced Trade tickers (WebSocket), reconnecting, into the job")
class CoinbaseSource(Source):
    """Streams canonical ticks collected live; ``close`` stops the collector."""

    config: CoinbaseSourceConfig

    def __init__(self, config: CoinbaseSourceConfig, context: RunContext):
        super().__init__(config, context)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._collector: Any = None
        self._error: BaseException | None = None
        self.dead_letters: DeadLetters | None = None
        self.summary = ""

    def schema(self) -> pa.Schema:
        return CANONICAL_TICK_SCHEMA

    def _collector_parts(self) -> tuple[Any, DeadLetters]:
        """The collector settings and dead-letter sink for this source (venues override)."""
        from tickflow.connectors.coinbase_auth import CoinbaseCredentials
        from tickflow.connectors.collector import CollectorSettings

        c = self.config
        settings = CollectorSettings(url=c.url, products=tuple(c.products),
                                     heartbeat_timeout_s=c.heartbeat_timeout_s,
                                     max_failures=c.max_failures, max_ticks=c.max_ticks,
                                     duration_s=c.duration_s,
                                     credentials=CoinbaseCredentials.from_env())
        return settings, DeadLetters(c.dead_letter_path, source=c.id or "coinbase")

    def _start(self) -> None:
        from tickflow.connectors.collector import Collector

        settings, self.dead_letters = self._collector_parts()
        self._collector = Collector(settings, _QueueWriter(self._queue), self.dead_letters)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                stats = loop.run_until_complete(self._collector.run())
                self.summary = stats.summary()
            except BaseException as exc:
                self._error = exc
            finally:
                loop.close()
                self._queue.put(_DONE)

        self._thread = threading.Thread(target=run, name=f"{self.config.kind}-source",
                                        daemon=True)
        self._thread.start()

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        if self._thread is None:
            self._start()
        limit = min(batch_rows, self.config.batch_rows)
        linger_s = self.config.linger_ms / 1000
        pending: list[dict[str, Any]] = []
        done = False
        while not done:
            deadline = time.monotonic() + linger_s
            while len(pending) < limit:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _DONE:
                    done = True
                    break
                pending.extend(item)
            while pending:
                chunk, pending = pending[:limit], pending[limit:]
                table = ticks_to_table(chunk)
                yield from (table.select(columns) if columns else table).to_batches()
                if not done and len(pending) < limit:
                    break
        if self._error is not None:
            if isinstance(self._error, SourceError):
                raise self._error
            msg = f"{self.config.kind} source: the collector failed: {self._error}"
            raise SourceError(msg) from self._error

    def close(self) -> None:
        if self._collector is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._collector.stop)
        if self._thread is not None:
            self._thread.join(30)
        if self.dead_letters is not None:
            self.dead_letters.close()
