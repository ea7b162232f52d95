"""The fill simulator's input as a sink of the job's graph: any graph can be backtested.

A backtest runs the same driver as research; this sink is attached to the main stream (ticks,
bars, joined timeframes: whatever the job's last step makes) and keeps the columns the strategy
reads as whole arrays, which :func:`~engine.backtest.run.simulate` then fills against. A stream
of bars has no ``price``: its ``close`` is the price (and without quotes, fills pay the
strategy's slippage around it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.engine.columns import float_column
from tickflow.engine.keys import KeyIndex
from tickflow.engine.runtime.pipeline import timestamp_us


class MarketDataSink:
    """Collects ``timestamp``, the key and the wanted columns of every batch it is given.

    Args:
        key: the job's key column (one simulated book per key value).
        columns: the float columns to keep (missing ones are left out; the caller decides).
    """

    def __init__(self, key: str, columns: set[str]):
        self.key = key
        self.columns = set(columns)
        self.keys = KeyIndex()
        self.ts: list[np.ndarray] = []
        self.sym: list[np.ndarray] = []
        self.parts: dict[str, list[np.ndarray]] = {}
        self.names: list[str] = []

    def open(self, schema: pa.Schema) -> None:
        names = set(schema.names)
        self.names = sorted(c for c in self.columns if c in names)
        if "price" in self.columns and "price" not in names and "close" in names:
            self.names.append("close")  # bars: the close is the price
        self.parts = {c: [] for c in self.names}

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.ts.append(timestamp_us(batch))
        self.sym.append(self.keys.encode(batch.column(self.key)))
        for c in self.names:
            self.parts[c].append(float_column(batch.column(c)))

    def close(self) -> None:
        return None

    @property
    def rows(self) -> int:
        return sum(len(t) for t in self.ts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, np.ndarray]]:
        """(ts, sym, symbols, columns): ``close`` renamed ``price`` for a stream of bars."""
        cols: dict[str, Any] = {c: np.concatenate(v) for c, v in self.parts.items()}
        if "close" in cols and "price" in self.columns and "price" not in cols and \
                "close" not in self.columns:
            cols["price"] = cols.pop("close")
        elif "close" in cols and "price" in self.columns and "price" not in cols:
            cols["price"] = cols["close"]
        return (np.concatenate(self.ts), np.concatenate(self.sym),
                [str(v) for v in self.keys.values], cols)
