"""The seed's SQLite output: canonical ticks in one ``ticks`` table, and back out in chunks.

A single file that any tool opens (``sqlite3 out.db 'select count(*) from ticks'``), written
in WAL mode so it can be read while the collector writes; a transaction per flush bounds
what a crash can lose to the last ``flush_s`` seconds, and ``close`` commits everything.
``-SK FILE`` replays such a file into Kafka through ``connectors/replay.py``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.tick_codec import encode_tick_values
from tickflow.connectors.tick_writers import BufferedTickWriter
from tickflow.engine.errors import SinkError, SourceError

FIELDS = CANONICAL_TICK_SCHEMA.names
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQL_TYPES = {"timestamp": "INTEGER NOT NULL", "symbol": "TEXT NOT NULL", "exchange": "TEXT",
              "sequence": "INTEGER"}
CREATE = ("CREATE TABLE IF NOT EXISTS ticks (" + ", ".join(
    f"{name} {_SQL_TYPES.get(name, 'REAL')}" for name in FIELDS) + ")")
INSERT = f"INSERT INTO ticks ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"


class SqliteTickWriter(BufferedTickWriter):
    """Ticks to a SQLite file (``timestamp`` as epoch microseconds), appended to.

    Args:
        path: the database file (created with its ``ticks`` table when missing).
        flush_rows / flush_s: commit after this many rows or seconds.
    """

    def __init__(self, path: str | Path, *, flush_rows: int = 10_000, flush_s: float = 1.0):
        self.path = Path(path)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows = 0
        self._buffer: list[tuple[Any, ...]] = []
        self._last_flush = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(CREATE)
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            msg = f"sqlite output {str(self.path)!r}: {exc}"
            raise SinkError(msg) from None

    def _buffered(self, ticks: list[dict[str, Any]]) -> Iterable[tuple[Any, ...]]:
        return (tuple(t.get(name) for name in FIELDS) for t in ticks)

    def flush(self) -> None:
        """Insert the buffered ticks in one transaction."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        try:
            with self._db:
                self._db.executemany(INSERT, self._buffer)
        except sqlite3.Error as exc:
            msg = f"sqlite output {str(self.path)!r}: {exc}"
            raise SinkError(msg) from None
        self.rows += len(self._buffer)
        self._buffer = []

    def close(self) -> str:
        self.flush()
        self._db.close()
        return f"wrote {self.rows:,} ticks to {self.path} (SQLite table ticks)"


def read_sqlite_ticks(path: str | Path, chunk_rows: int = 50_000) -> Iterator[pa.Table]:
    """The ``ticks`` table in insertion order, as canonical-schema tables of ``chunk_rows``."""
    p = Path(path)
    if not p.is_file():
        msg = f"sqlite: no file at {p}"
        raise SourceError(msg)
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        try:
            cursor = db.execute(f"SELECT {', '.join(FIELDS)} FROM ticks ORDER BY rowid")
        except sqlite3.DatabaseError as exc:
            msg = f"sqlite: {p} has no readable ticks table ({exc})"
            raise SourceError(msg) from None
        while rows := cursor.fetchmany(chunk_rows):
            columns = list(zip(*rows, strict=True))
            arrays = [pa.array(col, pa.int64()).cast(f.type) if f.name == "timestamp"
                      else pa.array(col, f.type)
                      for col, f in zip(columns, CANONICAL_TICK_SCHEMA, strict=True)]
            yield pa.Table.from_arrays(arrays, schema=CANONICAL_TICK_SCHEMA)
    finally:
        db.close()


def sqlite_chunks(path: str | Path) -> Iterator[tuple[list[tuple[bytes, bytes]], np.ndarray]]:
    """``(key, value)`` pairs in the JSON wire format and tick timestamps (µs), in chunks."""
    for table in read_sqlite_ticks(path, chunk_rows=5_000):
        values = encode_tick_values(table).to_pylist()
        keys = table.column("symbol").to_pylist()
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        yield [(k.encode(), v.encode()) for k, v in zip(keys, values, strict=True)], ts
