"""What a live run shows: signals as they fire, and per-symbol state.

The view must never slow the pipeline (a rich table redrawn per signal once held a replay
to 120 ticks/s on a terminal). So the pipeline thread only calls ``on_batch``, which updates
counters and a bounded queue in O(batch) with numpy and Arrow and formats nothing; a
render thread of the view's own draws from a snapshot at most ``refresh_hz`` (<= 10) times
a second.

On a terminal: a rich table per symbol (last price, spread, RSI, z-score, signal counts per
kind, last signal, ticks/s, consumer lag, tick-to-signal latency), with signal lines printed
above it while a person can read them; when more arrive per redraw than ``readable_per_redraw``
the view prints one summary line instead (counts per symbol and kind) and the table keeps the
latest few. Every signal still goes to the job's sinks (the topic, the Parquet log).
Elsewhere (a pipe, a log file): plain lines, one per signal (up to ``max_signal_lines``), and
a totals line every few seconds. Signal lines are the seed's: symbol, price, z-score, RSI,
CUSUM.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIGNAL_LABELS = {"buy": "BUY", "sell": "SELL", "regime_change": "REGIME CHANGE"}
MAX_REFRESH_HZ = 10.0
_VALUE_COLUMNS = ("price", "best_bid", "best_ask", "rsi", "zscore", "cusum_stat")
_NO_RICH_VIEW = False  # set by ``run-job --no-view`` (see ``rich_view_allowed``)


@contextlib.contextmanager
def rich_view_allowed(allowed: bool) -> Iterator[None]:
    """Within the block, views created without an explicit ``rich_view`` draw no table when
    ``allowed`` is False (``run-job --no-view``).

    Command-line glue: the live executor builds its view itself; an executor that passes
    ``rich_view`` explicitly is not affected.
    """
    global _NO_RICH_VIEW
    before, _NO_RICH_VIEW = _NO_RICH_VIEW, not allowed
    try:
        yield
    finally:
        _NO_RICH_VIEW = before


@dataclass
class SymbolState:
    price: float = float("nan")
    spread: float = float("nan")
    rsi: float = float("nan")
    zscore: float = float("nan")
    last_signal: str = ""
    tick_count: int = 0
    latency_ms: float = float("nan")
    signal_counts: dict[str, int] = field(default_factory=dict)
    # (batch, row, latency µs) of the symbol's latest tick: read when drawing, not per batch
    last_row: tuple[pa.RecordBatch, int, float] | None = None

    def resolve(self) -> None:
        """Fill the value fields from ``last_row`` (on the render thread)."""
        if self.last_row is None:
            return
        batch, row, latency_us = self.last_row
        values = {c: _at(_floats(batch, c), row) for c in _VALUE_COLUMNS}
        self.price, self.rsi, self.zscore = values["price"], values["rsi"], values["zscore"]
        self.spread = values["best_ask"] - values["best_bid"]
        self.latency_ms = latency_us / 1000


def format_signal(signal: str, symbol: str, price: float, zscore: float, rsi: float,
                  cusum: float) -> str:
    """One signal line: ``BUY  BTC-USD  price=60003.10  z=-2.31  rsi=27.4  cusum=0.84``."""
    label = SIGNAL_LABELS.get(signal, signal.upper())
    return (f"{label:<13} {symbol:<10} price={price:,.6g}  z={zscore:+.2f}  rsi={rsi:.1f}  "
            f"cusum={cusum:.3f}")


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray | None:
    if name not in batch.schema.names:
        return None
    col = batch.column(name)
    if pa.types.is_string(col.type) or pa.types.is_dictionary(col.type):
        return None
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _at(values: np.ndarray | None, i: int) -> float:
    return float(values[i]) if values is not None else float("nan")


class LiveView:
    """Per-batch counters for the pipeline thread; drawing on a thread of its own.

    Args:
        signals: the job's signal column names.
        key: the key column (symbol).
        out: where to print (stdout by default).
        rich_view: draw the per-symbol table (default: when ``out`` is a terminal).
        quiet: print nothing but the final totals.
        max_signal_lines: plain output stops printing single signals after this many.
        refresh_hz: redraws (terminal) or prints (plain) per second, at most 10.
        readable_per_redraw: on a terminal, more signals than this per redraw are summarised.
        recent_count: the latest signals the table keeps.
        start: start the render thread now (else ``start()``; ``update`` starts it too).
    """

    def __init__(self, signals: list[str], key: str = "symbol", out: TextIO | None = None,
                 rich_view: bool | None = None, quiet: bool = False,
                 max_signal_lines: int = 10_000, refresh_hz: float = 4.0,
                 readable_per_redraw: int = 3, recent_count: int = 6, start: bool = True):
        self.signals = list(signals)
        self.key = key
        self.out = out or sys.stdout
        self.quiet = quiet
        self.max_signal_lines = max_signal_lines
        self.interval_s = 1.0 / min(max(refresh_hz, 0.1), MAX_REFRESH_HZ)
        self.readable_per_redraw = readable_per_redraw
        self.symbols: dict[str, SymbolState] = {}
        self.lag = 0
        self.ticks = 0
        self.signal_count = 0
        self.signal_lines = 0
        self.redraw_count = 0
        self.draw_cpu_s = 0.0  # CPU time the render thread spent drawing
        self.recent: deque[str] = deque(maxlen=recent_count)
        self._latest: deque[tuple[str, pa.RecordBatch, int]] = deque(
            maxlen=max(recent_count, readable_per_redraw))
        self._lock = threading.Lock()
        # signals not yet printed: (kind, batch, rows), formatted by the render thread
        self._pending: list[tuple[str, pa.RecordBatch, np.ndarray]] = []
        self._pending_rows = 0
        self._interval_kinds: dict[str, int] = {}
        self._status: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rates: deque[tuple[float, dict[str, int]]] = deque()
        self._last_plain = time.monotonic()
        if rich_view is None:
            is_tty = bool(getattr(self.out, "isatty", lambda: False)())
            rich_view = is_tty and not _NO_RICH_VIEW
        self.is_rich = bool(rich_view) and not quiet
        self._live: Any = None
        if self.is_rich:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.out, highlight=False)
            # no refresh thread of rich's: ours redraws, once per interval
            self._live = Live(self._table(self._snapshot()), console=self._console,
                              auto_refresh=False, transient=False)
            self._live.start()
        if start:
            self.start()

    # ---------------------------------------------------------------- pipeline thread

    def start(self) -> None:
        """Start the render thread (idempotent; a quiet view has none)."""
        if self.quiet or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tickflow-live-view",
                                        daemon=True)
        self._thread.start()

    def say(self, text: str) -> None:
        """A status line (broker waits, replay progress): printed at once when plain."""
        if self.quiet:
            return
        if self._live is None:
            with self._lock:
                print(text, file=self.out, flush=True)
            return
        with self._lock:
            self._status.append(text)

    def update(self, result: pa.RecordBatch, latency_us: np.ndarray, lag: int) -> None:
        """The executor's call per processed batch (same as ``on_batch``)."""
        self.on_batch(result, latency_us, lag)

    def on_batch(self, result: pa.RecordBatch, latency_us: np.ndarray | None = None,
                 lag: int = 0) -> None:
        """Count one processed batch; O(rows) numpy and Arrow work, no formatting. A quiet
        view (nothing is ever drawn) counts ticks and lag only: this runs on the driver's
        thread between batches, where the next batch's ticks wait."""
        n = result.num_rows
        with self._lock:
            self.lag = lag
            self.ticks += n
        if n == 0 or self.quiet:
            return
        keys = result.column(self.key)
        encoded = keys if pa.types.is_dictionary(keys.type) else pc.dictionary_encode(keys)
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        names = [str(v) for v in encoded.dictionary.to_pylist()]
        counts = np.bincount(codes, minlength=len(names))
        # the last row of each symbol: the first one in reverse order
        distinct, first_reversed = np.unique(codes[::-1], return_index=True)
        last_rows = n - 1 - first_reversed
        latency = latency_us if latency_us is not None and latency_us.size == n else None
        fired: list[tuple[str, np.ndarray]] = []
        for name in self.signals:
            if name in result.schema.names:
                flags = np.asarray(result.column(name).to_numpy(zero_copy_only=False))
                rows = np.flatnonzero(flags == 1)
                if rows.size:
                    fired.append((name, rows))
        with self._lock:
            for code, row in zip(distinct.tolist(), last_rows.tolist(), strict=True):
                sym = self._sym(names[code])
                sym.tick_count += int(counts[code])
                sym.last_row = (result, row, float("nan") if latency is None
                                else float(latency[row]))
            for name, rows in fired:
                per_symbol = np.bincount(codes[rows], minlength=len(names))
                for code in np.flatnonzero(per_symbol).tolist():
                    sym = self._sym(names[code])
                    sym.signal_counts[name] = sym.signal_counts.get(name, 0) + \
                        int(per_symbol[code])
                self._sym(names[int(codes[rows[-1]])]).last_signal = \
                    SIGNAL_LABELS.get(name, name)
                self.signal_count += rows.size
                self._interval_kinds[name] = self._interval_kinds.get(name, 0) + rows.size
                if self.is_rich:  # the latest few only: a person reads no more
                    self._latest.extend((name, result, r)
                                        for r in rows[-self._latest.maxlen:].tolist())
                    continue
                # plain output prints every signal, up to max_signal_lines
                room = self.max_signal_lines - self.signal_lines - self._pending_rows
                keep = rows[:max(room, 0)]
                if keep.size:
                    self._pending.append((name, result, keep))
                    self._pending_rows += keep.size

    def _sym(self, name: str) -> SymbolState:
        sym = self.symbols.get(name)
        if sym is None:
            sym = self.symbols[name] = SymbolState()
        return sym

    # ---------------------------------------------------------------- render thread

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.thread_time()
            self._draw()
            self.draw_cpu_s += time.thread_time() - started

    def _take(self) -> tuple[list[str], list[str], dict[str, int], dict[str, Any]]:
        """Under the lock: status lines, pending signal lines, signals per kind since the
        last draw, a snapshot."""
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            pending += [(name, batch, np.array([r])) for name, batch, r in self._latest]
            self._latest.clear()
            kinds, self._interval_kinds = self._interval_kinds, {}
            status, self._status = self._status, []
            snapshot = self._snapshot()
        for sym in snapshot["symbols"].values():
            sym.resolve()
        lines = [line for name, batch, rows in pending
                 for line in self._format(name, batch, rows)]
        return status, lines, kinds, snapshot

    def _format(self, name: str, batch: pa.RecordBatch, rows: np.ndarray) -> list[str]:
        price, z = _floats(batch, "price"), _floats(batch, "zscore")
        rsi, cusum = _floats(batch, "rsi"), _floats(batch, "cusum_stat")
        keys = batch.column(self.key)
        return [format_signal(name, str(keys[r].as_py()), _at(price, r), _at(z, r),
                              _at(rsi, r), _at(cusum, r)) for r in rows.tolist()]

    def _snapshot(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "lag": self.lag, "signals": self.signal_count,
                "symbols": {k: SymbolState(**{**vars(s), "signal_counts": dict(
                    s.signal_counts)}) for k, s in self.symbols.items()},
                "recent": list(self.recent)}

    def _draw(self, final: bool = False) -> None:
        status, lines, kinds, snap = self._take()
        now = time.monotonic()
        if self._live is None:
            self._draw_plain(status, lines, snap, now, final)
            return
        printed = list(status)
        if sum(kinds.values()) <= self.readable_per_redraw:
            printed += lines
        else:
            printed.append(self._summary(kinds))
        with self._lock:
            self.recent.extend(lines)
            snap["recent"] = list(self.recent)
        self._live.update(self._table(snap, now), refresh=not printed)
        if printed:  # printing above the live display redraws it once
            self._live.console.print("\n".join(printed), markup=False, highlight=False)
        self.redraw_count += 1

    def _draw_plain(self, status: list[str], lines: list[str], snap: dict[str, Any],
                    now: float, final: bool) -> None:
        text = [*status, *lines]
        self.signal_lines += len(lines)
        if text:
            print("\n".join(text), file=self.out, flush=True)
        if not final and now - self._last_plain >= 5.0:
            self._last_plain = now
            rate = sum(self._rate(snap, now).values())
            print(f"{snap['ticks']:,} ticks, {rate:,.0f} ticks/s, lag {snap['lag']:,}, "
                  f"{len(snap['symbols'])} symbols", file=self.out, flush=True)

    def _summary(self, kinds: dict[str, int]) -> str:
        """One line for a burst: counts per kind, as a person can read it."""
        shown = ", ".join(f"{SIGNAL_LABELS.get(k, k)} {n:,}" for k, n in sorted(kinds.items()))
        return (f"{sum(kinds.values()):,} signals since the last redraw ({shown}); counts "
                f"per symbol below, every signal is in the job's outputs")

    def _rate(self, snap: dict[str, Any], now: float, window_s: float = 5.0) -> dict[str, float]:
        counts = {k: s.tick_count for k, s in snap["symbols"].items()}
        self._rates.append((now, counts))
        # keep one sample at least window_s old, so a rate spans the window even when
        # sampled rarely (plain output samples every 5 s)
        while len(self._rates) > 2 and now - self._rates[1][0] >= window_s:
            self._rates.popleft()
        then, before = self._rates[0]
        span = max(now - then, 1e-9)
        return {k: (c - before.get(k, 0)) / span if now > then else 0.0
                for k, c in counts.items()}

    def _table(self, snap: dict[str, Any], now: float | None = None) -> Any:
        from rich.console import Group
        from rich.table import Table

        rates = self._rate(snap, now) if now is not None else {}
        table = Table(title=f"tickflow live: {snap['ticks']:,} ticks, {snap['signals']:,} "
                            f"signals, consumer lag {snap['lag']:,}")
        for col in ("symbol", "last price", "spread", "RSI", "z-score", "signals",
                    "last signal", "ticks/s", "latency ms"):
            table.add_column(col, justify="left" if col in ("symbol", "signals", "last signal")
                             else "right")
        for name in sorted(snap["symbols"]):
            s = snap["symbols"][name]
            counts = " ".join(f"{SIGNAL_LABELS.get(k, k).lower()} {n:,}"
                              for k, n in sorted(s.signal_counts.items()))
            table.add_row(name, f"{s.price:,.6g}", f"{s.spread:.6g}", f"{s.rsi:.1f}",
                          f"{s.zscore:+.2f}", counts, s.last_signal,
                          f"{rates.get(name, 0.0):,.0f}", f"{s.latency_ms:.2f}")
        if not snap["recent"]:
            return table
        return Group(table, "latest signals:", *snap["recent"])

    def close(self) -> None:
        """Stop drawing; print what is pending and draw the table a last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.quiet:
            self._draw(final=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
