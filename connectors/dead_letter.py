"""Where messages that cannot be used go: counted by reason and kept with their raw payload.

Every source that parses outside data (WebSocket frames, Kafka values, files) hands a message it
cannot use to a :class:`DeadLetters` instead of dropping it or crashing. The records are JSON
Lines (``time``, ``source``, ``reason``, ``payload`` and any coordinates such as the partition
and offset), written to a file and/or handed to a callback (for example a Kafka producer), so
that nothing received is lost and every loss of a tick can be explained afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class DeadLetters:
    """A counted dead-letter sink; thread-safe.

    Args:
        path: JSON Lines file to append records to (created with its directory), or None.
        forward: called with each encoded record (bytes) and its reason, e.g. to produce it to
            a Kafka topic; None to keep records in the file only.
        source: default ``source`` field of the records (the connector's id).
    """

    def __init__(self, path: str | Path | None = None, *,
                 forward: Callable[[bytes, str], None] | None = None, source: str = ""):
        self.path = Path(path) if path is not None else None
        self.forward = forward
        self.source = source
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._file: Any = None  # opened on the first record: no empty files beside outputs
        self.clock = time.time  # the records' ``time`` (a test pins it)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, payload: bytes | str | Any, **coordinates: Any) -> None:
        """Keep one unusable message. ``reason`` is a short category (``malformed_json``) that
        is counted; details belong in ``coordinates`` (e.g. ``detail="missing price"``)."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", errors="replace")
        elif not isinstance(payload, str):
            payload = json.dumps(payload, default=str)
        record = {"time": self.clock(), "source": coordinates.pop("source", self.source),
                  "reason": reason, "payload": payload, **coordinates}
        line = json.dumps(record, default=str, ensure_ascii=False)
        with self._lock:
            self.counts[reason] += 1
            self._write(line + "\n")
            if self.forward is not None:
                self.forward(line.encode(), reason)

    def add_rows(self, rows: Any, reasons: Sequence[str], numbers: Sequence[int], *,
                 source: str | None = None) -> None:
        """Keep many Arrow rows (a RecordBatch or Table) at once: the same lines as
        ``add(reason, row, source=source, row=number)`` for each; from ``BULK_ROWS`` rows
        one ``time`` for them all, formatted column by column (``dead_letter_rows``)."""
        if len(reasons) != rows.num_rows or len(numbers) != rows.num_rows:
            raise ValueError("add_rows needs one reason and one row number a row")
        if not rows.num_rows:
            return
        from tickflow.connectors import dead_letter_rows

        source = self.source if source is None else source
        if rows.num_rows < dead_letter_rows.BULK_ROWS:  # a few: the column passes cost more
            for row, reason, number in zip(rows.to_pylist(), reasons, numbers, strict=True):
                self.add(reason, row, source=source, row=number)
            return
        out = dead_letter_rows.lines(rows, reasons, numbers, self.clock(), source)
        with self._lock:
            self.counts.update(reasons)
            self._write("\n".join(out) + "\n")
            if self.forward is not None:
                for line, reason in zip(out, reasons, strict=True):
                    self.forward(line.encode(), reason)

    def _write(self, text: str) -> None:
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(text)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def summary(self) -> str:
        if not self.counts:
            return "dead letters: 0"
        parts = ", ".join(f"{reason}={n:,}" for reason, n in sorted(self.counts.items()))
        where = f" (kept in {self.path})" if self.path is not None else ""
        return f"dead letters: {self.total:,} [{parts}]{where}"


def read_dead_letters(path: str | Path) -> list[dict[str, Any]]:
    """The records of a dead-letter file, oldest first."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
