"""Bigger morsels once a job has seen many keys: consecutive source batches joined on read-ahead.

At 100,000 keys a morsel of 65,536 rows holds 0.65 rows a key, so each of the ~34 kernel steps
misses cache on every row's state; grouped by key (``key_groups``), a morsel of 262,144 rows
lets a key's rows reuse its state, and each step's per-morsel bookkeeping (``reserve``) runs a
quarter as often. Measured on the research job at 100K keys, one lane, thread CPU time of
``Pipeline.process``: 5.3 s in morsels of 65,536 rows, 4.0 s in morsels of 262,144. What a
joined morsel costs is memory: its output columns, held while computed and while written
(``MORSEL_BYTES``).

Batches are joined where that is cheap and exact: same schema, and each dictionary column's
dictionary beginning with the one before (the morsels of one Parquet row group), so indices
stay valid and key ids are mapped once (``KeyIndex``). Whatever follows a source item (its
position and quality mark for a checkpoint) is the last joined item's: exactly the state
after the joined batch's rows. Rows, order and outputs do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from tickflow.engine.runtime.key_groups import GROUP_MIN_KEYS

MAX_GROWTH = 4
"""A joined morsel holds at most this many of the job's ``morsel_rows``."""
ROWS_PER_KEY = 4
"""Rows a morsel aims at for each key seen so far (one lane)."""
# The joined morsel's bound, ``executor.morsel_mb`` (32 by default), is in bytes of output row
# (``row_bytes`` of the output schema), so that what the loop, the read-ahead and the writer
# hold is bounded whatever the width of the rows. About three morsels are in flight (one read
# ahead, one computed, one written), so the peak grows by about three times what a morsel
# grows. At 32 MB the research job's 412-byte rows (55 columns) are not joined, which keeps
# its peak where it was: at 64 MB (131,072 rows) its whole-process CPU fell about 5% for about
# 40 MB more peak RSS, at 128 MB (262,144 rows) 10% for 120 MB more (docs/performance.md).


def row_bytes(schema: pa.Schema) -> int:
    """About how many bytes a row of ``schema`` takes (8 for a type of no fixed width)."""
    total = 0
    for field in schema:
        t = field.type.index_type if pa.types.is_dictionary(field.type) else field.type
        try:
            total += max(t.bit_width // 8, 1)
        except ValueError:
            total += 8
    return total


def morsel_target(morsel_rows: int, keys: int, row_bytes: int, morsel_mb: int) -> int:
    """Rows to join into one morsel: ``morsel_rows`` until there are many keys (as many as
    make rows worth grouping by key), then about ``ROWS_PER_KEY`` a key, at most
    ``MAX_GROWTH`` morsels and ``morsel_mb`` of output rows."""
    if keys < GROUP_MIN_KEYS:
        return morsel_rows
    want = min(keys * ROWS_PER_KEY, morsel_rows * MAX_GROWTH,
               (morsel_mb << 20) // max(row_bytes, 1))
    return max(morsel_rows, want)


def joined(items: Iterator[Any], target: Callable[[], int], split: Callable[[Any], tuple],
           pack: Callable[[pa.RecordBatch, tuple], Any]) -> Iterator[Any]:
    """``items`` with consecutive batches joined into morsels of at most ``target()`` rows
    (asked per batch; a single batch may hold more).

    ``split(item)`` gives ``(batch, rest)``; ``pack(batch, rest)`` builds an item. A joined
    item takes the last part's ``rest``, or an earlier part's where the last one's first
    field (a position) is None.
    """
    parts: list[tuple[pa.RecordBatch, tuple]] = []
    rows = 0
    for item in items:
        batch, rest = split(item)
        del item
        if parts and (rows + batch.num_rows > target() or not _joinable(parts[-1][0], batch)):
            out, parts, rows = _join(parts, pack), [], 0
            yield out  # (the parts let go first: they are not held while it waits)
            del out
        parts.append((batch, rest))
        rows += batch.num_rows
        del batch, rest
        if rows >= target():  # full: out now, without reading the next batch ahead
            out, parts, rows = _join(parts, pack), [], 0
            yield out
            del out
    if parts:
        out, parts = _join(parts, pack), []
        yield out


def _joinable(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    if not a.schema.equals(b.schema, check_metadata=False):
        return False
    for ca, cb in zip(a.columns, b.columns, strict=True):
        if pa.types.is_dictionary(ca.type):
            da, db = ca.dictionary, cb.dictionary
            if len(db) < len(da) or not db.slice(0, len(da)).equals(da):
                return False
    return True


def _join(parts: list[tuple[pa.RecordBatch, tuple]], pack: Callable[..., Any]) -> Any:
    batches = [b for b, _ in parts]
    rest = parts[-1][1]
    if rest and rest[0] is None:  # a stage's tail has no position: the last one before it
        position = next((r[0] for _, r in reversed(parts) if r and r[0] is not None), None)
        rest = (position, *rest[1:])
    if len(batches) == 1:
        return pack(batches[0], rest)
    columns = []
    for i, field in enumerate(batches[-1].schema):
        chunks = [b.column(i) for b in batches]
        if pa.types.is_dictionary(field.type):  # every dictionary is a prefix of the last
            indices = pa.concat_arrays([c.indices for c in chunks])
            columns.append(pa.DictionaryArray.from_arrays(indices, chunks[-1].dictionary))
        else:
            columns.append(pa.concat_arrays(chunks))
    return pack(pa.RecordBatch.from_arrays(columns, schema=batches[-1].schema), rest)
