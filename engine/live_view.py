"""What a live run shows: signals as they fire, and per-symbol state.

On a terminal, a rich table per symbol (last price, spread, RSI, z-score, last signal,
ticks/s, consumer lag, tick-to-signal latency) redrawn a few times a second, with signals
printed above it. Elsewhere (a pipe, a log file), plain lines: one per signal, and a totals
line every few seconds. Signal lines are the seed's: symbol, price, z-score, RSI, CUSUM.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

SIGNAL_LABELS = {"buy": "BUY", "sell": "SELL", "regime_change": "REGIME CHANGE"}


@dataclass
class SymbolState:
    price: float = float("nan")
    spread: float = float("nan")
    rsi: float = float("nan")
    zscore: float = float("nan")
    last_signal: str = ""
    tick_count: int = 0
    latency_ms: float = float("nan")
    recent: list[tuple[float, int]] = field(default_factory=list)

    def rate(self, now: float, window_s: float = 5.0) -> float:
        self.recent = [(t, n) for t, n in self.recent if now - t <= window_s]
        if not self.recent:
            return 0.0
        span = max(now - self.recent[0][0], 1.0)
        return sum(n for _, n in self.recent) / span


def _value(batch: pa.RecordBatch, name: str) -> np.ndarray | None:
    if name not in batch.schema.names:
        return None
    col = batch.column(name)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64) \
        if not pa.types.is_string(col.type) else None


def format_signal(signal: str, symbol: str, price: float, zscore: float, rsi: float,
                  cusum: float) -> str:
    """One signal line: ``BUY  BTC-USD  price=60003.10  z=-2.31  rsi=27.4  cusum=0.84``."""
    label = SIGNAL_LABELS.get(signal, signal.upper())
    return (f"{label:<13} {symbol:<10} price={price:,.6g}  z={zscore:+.2f}  rsi={rsi:.1f}  "
            f"cusum={cusum:.3f}")


class LiveView:
    """Receives each processed batch; prints signals and keeps per-symbol state.

    Args:
        signals: the job's signal column names.
        key: the key column (symbol).
        out: where to print (stdout by default).
        rich_view: draw the per-symbol table (default: when ``out`` is a terminal).
        quiet: print nothing but the final totals.
        max_signal_lines: stop printing single signals after this many (counts go on).
    """

    def __init__(self, signals: list[str], key: str = "symbol", out: TextIO | None = None,
                 rich_view: bool | None = None, quiet: bool = False,
                 max_signal_lines: int = 10_000):
        self.signals = signals
        self.key = key
        self.out = out or sys.stdout
        self.quiet = quiet
        self.symbols: dict[str, SymbolState] = {}
        self.lag = 0
        self.signal_lines = 0
        self.max_signal_lines = max_signal_lines
        self._last_plain = time.monotonic()
        self.ticks = 0
        is_tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._live: Any = None
        if not quiet and (rich_view if rich_view is not None else is_tty):
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.out, highlight=False)
            self._live = Live(self._table(), console=self._console, refresh_per_second=4,
                              transient=False)
            self._live.start()

    def say(self, text: str) -> None:
        """A status line (broker waits, replay progress)."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.out, flush=True)

    def update(self, result: pa.RecordBatch, latency_us: np.ndarray, lag: int) -> None:
        """Take one processed batch: print its signals, refresh per-symbol state."""
        now = time.monotonic()
        self.lag = lag
        self.ticks += result.num_rows
        if result.num_rows == 0:
            return
        symbols = result.column(self.key).to_pylist()
        price = _value(result, "price")
        bid, ask = _value(result, "best_bid"), _value(result, "best_ask")
        rsi, z = _value(result, "rsi"), _value(result, "zscore")
        cusum = _value(result, "cusum_stat")
        fired = {s: np.flatnonzero(np.asarray(result.column(s)) == 1) for s in self.signals
                 if s in result.schema.names}
        for name, rows in fired.items():
            for r in rows:
                sym = self._sym(symbols[r])
                sym.last_signal = SIGNAL_LABELS.get(name, name)
                if self.quiet or self.signal_lines >= self.max_signal_lines:
                    continue
                self.signal_lines += 1
                self.say(format_signal(name, str(symbols[r]), _at(price, r), _at(z, r),
                                       _at(rsi, r), _at(cusum, r)))
        # the last row of each symbol in the batch
        last: dict[Any, int] = {}
        counts: dict[Any, int] = {}
        for i, s in enumerate(symbols):
            last[s] = i
            counts[s] = counts.get(s, 0) + 1
        for s, i in last.items():
            sym = self._sym(s)
            sym.price, sym.rsi, sym.zscore = _at(price, i), _at(rsi, i), _at(z, i)
            sym.spread = _at(ask, i) - _at(bid, i)
            sym.tick_count += counts[s]
            sym.recent.append((now, counts[s]))
            if latency_us.size == len(symbols):
                sym.latency_ms = float(latency_us[i]) / 1000
        if self._live is not None:
            self._live.update(self._table())
        elif not self.quiet and now - self._last_plain >= 5.0:
            self._last_plain = now
            rate = sum(s.rate(now) for s in self.symbols.values())
            print(f"{self.ticks:,} ticks, {rate:,.0f} ticks/s, lag {lag:,}, "
                  f"{len(self.symbols)} symbols", file=self.out, flush=True)

    def _sym(self, key: Any) -> SymbolState:
        name = str(key)
        if name not in self.symbols:
            self.symbols[name] = SymbolState()
        return self.symbols[name]

    def _table(self) -> Any:
        from rich.table import Table

        now = time.monotonic()
        table = Table(title=f"tickflow live: {self.ticks:,} ticks, consumer lag {self.lag:,}")
        for col in ("symbol", "last price", "spread", "RSI", "z-score", "last signal",
                    "ticks/s", "latency ms"):
            table.add_column(col, justify="left" if col in ("symbol", "last signal")
                             else "right")
        for name in sorted(self.symbols):
            s = self.symbols[name]
            table.add_row(name, f"{s.price:,.6g}", f"{s.spread:.6g}", f"{s.rsi:.1f}",
                          f"{s.zscore:+.2f}", s.last_signal, f"{s.rate(now):,.0f}",
                          f"{s.latency_ms:.2f}")
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None


def _at(values: np.ndarray | None, i: int) -> float:
    return float(values[i]) if values is not None else float("nan")
