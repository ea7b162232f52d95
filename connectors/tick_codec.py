"""The ticks topic's wire format: one JSON object per tick, canonical field names, key = symbol.

    {"timestamp": "2026-08-09T12:00:00.123456Z", "symbol": "BTC-USD", "exchange": "coinbase",
     "price": 1.0, "best_bid": ..., "best_ask": ..., "best_bid_size": ..., "best_ask_size": ...,
     "last_size": null, "volume_24h": ..., "sequence": 123}

Both directions work on whole batches. Encoding builds every JSON text with Arrow string
kernels; decoding first tries msgspec on a batch of clean ticks (tick_json_fast.py), else
hands the newline-joined values to ``pyarrow.json.read_json`` at once. Only when that fails
does the decoder look closer: numbers sent as strings (Coinbase does) are
unquoted in one regex pass, and a batch that still fails is bisected so that the few bad
messages are isolated and explained while the rest keep the fast path.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.json_rows import encode_json_rows_small
from tickflow.connectors.tick_json_fast import decode_clean

NUMERIC_FIELDS = ("price", "best_bid", "best_ask", "best_bid_size", "best_ask_size",
                  "last_size", "volume_24h")
REQUIRED_FIELDS = ("timestamp", "symbol")
_NUMBER = rb"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUOTED_NUMBER = re.compile(
    rb'"(' + "|".join((*NUMERIC_FIELDS, "sequence")).encode() + rb')"(\s*):(\s*)"(' + _NUMBER
    + rb')"')
_PARSE = pj.ParseOptions(explicit_schema=CANONICAL_TICK_SCHEMA,
                         unexpected_field_behavior="ignore")
_READ = pj.ReadOptions(use_threads=False, block_size=1 << 26)

Rejected = list[tuple[int, str]]
_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------- encode

def _json_numbers(col: pa.Array) -> pa.Array:
    """Shortest round-trip text of each number; null, NaN and infinities become ``null``."""
    if pa.types.is_floating(col.type):
        col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, col.type))
    return pc.fill_null(pc.cast(col, pa.string()), "null")


def _json_strings(col: pa.Array) -> pa.Array:
    """JSON string literals; the (few) distinct values are escaped by ``json.dumps``
    (a dictionary column's own dictionary: not decoded to be encoded again)."""
    if pa.types.is_dictionary(col.type) and (pa.types.is_string(col.type.value_type) or
                                             pa.types.is_large_string(col.type.value_type)):
        encoded = col
    else:
        encoded = pc.dictionary_encode(col.cast(pa.string()))
    quoted = pa.array([json.dumps(v) for v in encoded.dictionary.to_pylist()], pa.string())
    out = pc.take(quoted, encoded.indices)
    return pc.fill_null(out, "null")


def encode_json_values(batch: pa.RecordBatch | pa.Table,
                       columns: list[str] | None = None) -> pa.Array:
    """One JSON object per row over ``columns`` (default: all), as an Arrow string array.

    Timestamps become ISO 8601 in UTC with a ``Z``; NaN and infinities become ``null``.
    Number columns of one type are formatted together (one kernel call each for all of
    them, then sliced): a live sink's batch holds a few rows, where each call's fixed cost is
    what counts (tests/kafka/test_json_encode.py).
    """
    names = list(columns or batch.schema.names)
    if not names:
        return pa.array(["{}"] * batch.num_rows, pa.string())
    texts: list[Any] = [None] * len(names)
    numbers: dict[pa.DataType, list[tuple[int, pa.Array]]] = {}
    for i, name in enumerate(names):
        col = batch.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_null(col.type):
            texts[i] = pa.scalar("null")
        elif pa.types.is_timestamp(col.type):
            texts[i] = _json_timestamps(col)
        elif pa.types.is_dictionary(col.type) or pa.types.is_string(col.type) or \
                pa.types.is_large_string(col.type):
            texts[i] = _json_strings(col)
        else:
            numbers.setdefault(col.type, []).append((i, col))
    rows = batch.num_rows
    for group in numbers.values():
        if len(group) == 1:
            texts[group[0][0]] = _json_numbers(group[0][1])
            continue
        joined = _json_numbers(pa.concat_arrays([col for _, col in group]))
        for k, (i, _) in enumerate(group):
            texts[i] = joined.slice(k * rows, rows)
    parts: list[Any] = []
    for prefix, text in zip(_prefixes(tuple(names)), texts, strict=True):
        parts += (prefix, text)
    parts.append(_CLOSE)
    return pc.binary_join_element_wise(*parts, "")


_CLOSE = pa.scalar("}")

# below this many rows a write is formatted value by value in Python (json_rows.py, the same
# bytes): Arrow's ~20 kernel calls cost ~400 µs whatever the size (bench/live_batch_cpu.py)
SMALL_ROWS = 32  # the crossover measured at a signal write's 9 columns: ~40 rows


def encode_json_bytes(batch: pa.RecordBatch | pa.Table,
                      columns: list[str] | None = None) -> list[bytes]:
    """``encode_json_values`` as bytes, one per row; a small batch takes the per-row path."""
    if batch.num_rows < SMALL_ROWS:
        rows = encode_json_rows_small(batch, list(columns or batch.schema.names))
        if rows is not None:
            return rows
    return encode_json_values(batch, columns).cast(pa.binary()).to_pylist()


@functools.lru_cache(maxsize=64)
def _prefixes(names: tuple[str, ...]) -> list[pa.Scalar]:
    """``{"name":`` then ``,"name":`` ... as Arrow scalars: the same for every batch of a sink."""
    return [pa.scalar(("{" if i == 0 else ",") + json.dumps(name) + ":")
            for i, name in enumerate(names)]


_UTC_US = pa.timestamp("us", tz="UTC")


def _json_timestamps(col: pa.Array) -> pa.Array:
    """Quoted ISO 8601 text in UTC with a ``Z``, null as ``null``."""
    if col.type != _UTC_US:
        col = pc.cast(col, _UTC_US)
    # UTC wall time without a zone (the same int64, viewed): Arrow formats it 3x faster than
    # strftime (or than the UTC-zoned cast), the same text (tests/kafka/test_tick_codec.py)
    text = pc.replace_substring(col.view(pa.timestamp("us")).cast(pa.string()), " ", "T",
                                max_replacements=1)
    return pc.fill_null(pc.binary_join_element_wise('"', text, 'Z"', ""), "null")


def encode_tick_values(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """The wire value of every row of a canonical-schema batch (missing fields as null)."""
    names = batch.schema.names
    missing = [f for f in CANONICAL_TICK_SCHEMA if f.name not in names]
    if missing:
        arrays = [batch.column(f.name) if f.name in names else pa.nulls(batch.num_rows, f.type)
                  for f in CANONICAL_TICK_SCHEMA]
        batch = pa.table(arrays, names=CANONICAL_TICK_SCHEMA.names)
    return encode_json_values(batch, CANONICAL_TICK_SCHEMA.names)


def encode_tick_rows(batch: pa.RecordBatch | pa.Table, key: str = "symbol",
                     ) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` pairs to produce, one per row, in row order."""
    values = encode_tick_values(batch).cast(pa.binary()).to_pylist()
    keys = key_bytes(batch.column(key), "")
    return list(zip(keys, values, strict=True))


def key_bytes(col: pa.Array | pa.ChunkedArray, null: str) -> list[bytes]:
    """Each value's text as message key bytes, ``null`` for a null; strings converted by Arrow
    at once (a dictionary-encoded symbol's ``to_pylist`` alone took 1 µs a row)."""
    kind = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if len(col) < SMALL_ROWS:  # three Arrow calls cost ~25 µs whatever the size
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if pa.types.is_dictionary(col.type):
                empty = null.encode()
                words = [empty if v is None else v.encode() for v in col.dictionary.to_pylist()]
                return [empty if i is None else words[i] for i in col.indices.to_pylist()]
            return [(null if k is None else k).encode() for k in col.to_pylist()]
        return pc.fill_null(col.cast(pa.string()), null).cast(pa.binary()).to_pylist()
    return [(null if k is None else str(k)).encode() for k in col.to_pylist()]


# ---------------------------------------------------------------------------- decode

def _read(lines: list[bytes]) -> pa.Table:
    """The values as one table, one row per value; ArrowInvalid when that cannot be sure."""
    text = b"\n".join(lines)
    # Arrow's reader crashes the process (SIGSEGV, pyarrow 26) on a buffer that starts with
    # ``null``, and splits a value holding a newline into two rows: such values never reach it
    if text.count(b"\n") != len(lines) - 1 or not all(v[:1] == b"{" for v in lines):
        raise pa.ArrowInvalid("a value that is not one line holding a JSON object")
    table = pj.read_json(io.BytesIO(text), read_options=_READ, parse_options=_PARSE)
    if table.num_rows != len(lines):
        # a blank value is skipped and a value holding two lines gives two rows: either would
        # pin the following rows on the wrong messages (and offsets), so look closer
        msg = f"{table.num_rows} rows from {len(lines)} values"
        raise pa.ArrowInvalid(msg)
    return table.select(CANONICAL_TICK_SCHEMA.names)


def _unquote(value: bytes) -> bytes:
    return _QUOTED_NUMBER.sub(rb'"\1"\2:\3\4', value)


def _explain(value: bytes) -> tuple[dict[str, Any] | None, str]:
    """Decode one message by hand: a clean row, or None and why it cannot be used."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None, "malformed_json"
    except RecursionError:  # nested past the interpreter's limit: hostile, never a tick
        return None, "too_deep"
    if not isinstance(obj, dict):
        return None, "not_an_object"
    row: dict[str, Any] = {}
    for name in REQUIRED_FIELDS:
        if obj.get(name) in (None, ""):
            return None, f"missing_{name}"
    if not isinstance(obj["symbol"], str):
        return None, "bad_symbol"
    row["symbol"] = obj["symbol"]
    exchange = obj.get("exchange")
    row["exchange"] = exchange if isinstance(exchange, str) else None
    row["timestamp"] = _timestamp(obj["timestamp"])
    if row["timestamp"] is None:
        return None, "bad_timestamp"
    for name in (*NUMERIC_FIELDS, "sequence"):
        raw = obj.get(name)
        if raw is None:
            row[name] = None
            continue
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
            return None, f"bad_{name}"
        if name == "sequence":
            if not math.isfinite(number) or number != int(number) or \
                    abs(number) > _INT64_MAX:  # the column is int64
                return None, "bad_sequence"
            row[name] = int(number)
        else:
            row[name] = number
    return row, ""


def _timestamp(raw: Any) -> datetime | None:
    """ISO 8601 text as an aware datetime; no zone means UTC, as Arrow's batch reader takes it
    (a message's fate must not depend on the batch it arrives in)."""
    if not isinstance(raw, str):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", raw.strip())  # nanoseconds: keep microseconds
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _decode_part(values: list[bytes], offset: int, tables: list[pa.Table],
                 rejected: Rejected) -> None:
    """Decode ``values`` (starting at index ``offset``), bisecting around failures."""
    try:
        tables.append(_read(values))
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if len(values) == 1:
        row, reason = _explain(values[0])
        if row is not None:
            try:
                tables.append(pa.Table.from_pylist([row], schema=CANONICAL_TICK_SCHEMA))
            except (pa.ArrowException, OverflowError, ValueError, TypeError):
                row, reason = None, "bad_value"  # a value its column cannot hold
        if row is None:
            rejected.append((offset, reason))
        return
    half = len(values) // 2
    _decode_part(values[:half], offset, tables, rejected)
    _decode_part(values[half:], offset + half, tables, rejected)


def decode_tick_values(values: list[bytes]) -> tuple[pa.RecordBatch, Rejected]:
    """Decode message values into a canonical-schema batch.

    Args:
        values: raw message values, in consumption order.

    Returns:
        The decoded rows (in input order, unusable ones left out) and ``(index, reason)``
        for every value left out: ``malformed_json``, ``not_an_object``,
        ``missing_timestamp``, ``missing_symbol``, ``bad_timestamp``, ``bad_<field>`` or
        ``too_deep`` (JSON nested past the decoder's limit).
        ``kept_indices(len(values), rejected)`` maps rows back to indices of ``values``.
    """
    if not values:
        return pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA), []
    clean = decode_clean(values)
    if clean is not None:
        return clean, []
    return decode_tick_values_arrow(values)


def decode_tick_values_arrow(values: list[bytes]) -> tuple[pa.RecordBatch, Rejected]:
    """``decode_tick_values`` without the msgspec fast path: Arrow's reader, then bisection
    (the verdicts the fast path must agree with; tests/kafka/test_tick_json_fast.py)."""
    if not values:
        return pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA), []
    rejected: Rejected = []
    tables: list[pa.Table] = []
    try:
        tables.append(_read(values))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        _decode_part([_unquote(v) for v in values], 0, tables, rejected)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0] if tables else \
        CANONICAL_TICK_SCHEMA.empty_table()
    # Arrow accepts an explicit null; a tick must still say when and what
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in REQUIRED_FIELDS:
        col = table.column(name)
        if col.null_count:
            missing |= col.is_null().to_numpy(zero_copy_only=False)
    # an empty symbol names no key: refused as when the message is explained alone
    empty = pc.equal(table.column("symbol"), "")
    if pc.any(empty).as_py():
        missing |= empty.fill_null(False).to_numpy(zero_copy_only=False)
    if missing.any():
        kept = kept_indices(len(values), rejected)
        for row in np.flatnonzero(missing):
            reason = "missing_timestamp" if table.column("timestamp")[int(row)].as_py() \
                is None else "missing_symbol"
            rejected.append((int(kept[row]), reason))
        table = table.filter(pa.array(~missing))
        rejected.sort()
    batch = table.combine_chunks().to_batches()
    out = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA)
    return out, rejected


def kept_indices(n: int, rejected: Rejected) -> np.ndarray:
    """Indices into the decoded ``values`` of the rows that were kept, in order."""
    if not rejected:
        return np.arange(n)
    mask = np.ones(n, dtype=bool)
    mask[[i for i, _ in rejected]] = False
    return np.flatnonzero(mask)
