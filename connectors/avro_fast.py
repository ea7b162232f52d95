"""The Avro tick decoder's fast path: a batch of Confluent-Avro values in one compiled pass.

fastavro reads a tick record in about 6 µs (it walks the schema's dicts for every record and
builds a dict), most of the Avro drain's time (bench/live.py --formats avro). Tick records are
flat: every field a long, int, double, float, boolean or string, or a union of null and one
of them. ``decode_batch`` scans all the bodies in one numba loop (field positions, longs, null
branches), then gathers each column with numpy into Arrow arrays. It takes a batch only when
every value is Confluent framing of the same writer schema, every record ends exactly at its
message's end, its strings are UTF-8 and it has a timestamp and a symbol; anything else returns
``None`` and the caller's fastavro path decides, with its reasons (tests/kafka/test_avro_fast.py
checks the two agree).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA

LONG, DOUBLE, FLOAT, BOOLEAN, STRING = range(5)
_KINDS = {"long": LONG, "int": LONG, "double": DOUBLE, "float": FLOAT, "boolean": BOOLEAN,
          "string": STRING}
# canonical field -> writer kinds it is read from (what the fastavro path accepts alike)
_TIMESTAMP_SCALE = {None: 1, "timestamp-micros": 1, "timestamp-millis": 1000}
# what fastavro can turn into a datetime (years 1-9999), in µs since the epoch
_DATETIME_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)


class Plan:
    """How to read one writer schema's records: per field its kind and null branch."""

    def __init__(self, names: list[str], kinds: list[int], nulls: list[int],
                 logical: list[str | None]):
        self.names = names
        self.kinds = np.asarray(kinds, dtype=np.int64)
        self.nulls = np.asarray(nulls, dtype=np.int64)
        self.logical = logical


def plan_for(schema: Any) -> Plan | None:
    """A ``Plan`` for a writer schema (parsed JSON), or None when it is not a flat record of
    the supported types (the fastavro path reads it)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    names, kinds, nulls, logical = [], [], [], []
    for field in schema.get("fields", []):
        kind, null = field.get("type"), -1
        if isinstance(kind, list):
            if len(kind) != 2 or "null" not in kind or kind[0] == kind[1]:
                return None
            null = kind.index("null")
            kind = kind[1 - null]
        logical_type = None
        if isinstance(kind, dict):
            logical_type = kind.get("logicalType")
            kind = kind.get("type")
            if logical_type not in (None, "timestamp-micros", "timestamp-millis") or \
                    (logical_type is not None and kind != "long"):
                return None
        if kind not in _KINDS:
            return None
        names.append(field["name"])
        kinds.append(_KINDS[kind])
        nulls.append(null)
        logical.append(logical_type)
    return Plan(names, kinds, nulls, logical)


@njit(cache=True, nogil=True)
def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (value, next position), or (0, -1) past ``end``/10 bytes."""
    result = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= end:
            return 0, -1
        byte = np.uint64(buf[pos])
        pos += 1
        result |= (byte & np.uint64(0x7F)) << shift
        if byte < np.uint64(0x80):
            return np.int64(result >> np.uint64(1)) ^ -np.int64(result & np.uint64(1)), pos
        shift += np.uint64(7)
    return 0, -1


@njit(cache=True, nogil=True)
def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, kinds: np.ndarray,
          nulls: np.ndarray, values: np.ndarray, lengths: np.ndarray,
          valid: np.ndarray) -> int:
    """Read every record: per field a long's value or the byte position of a double, float,
    boolean or string (and a string's length), null or not. Returns the index of the first
    record that does not read cleanly to its message's end, or -1."""
    for i in range(starts.shape[0]):
        pos, end = starts[i], ends[i]
        for f in range(kinds.shape[0]):
            if nulls[f] >= 0:
                branch, pos = _varint(buf, pos, end)
                if pos < 0 or (branch != 0 and branch != 1):
                    return i
                if branch == nulls[f]:
                    continue
            kind = kinds[f]
            if kind == LONG:
                value, pos = _varint(buf, pos, end)
                if pos < 0:
                    return i
                values[f, i] = value
            elif kind == STRING:
                length, pos = _varint(buf, pos, end)
                if pos < 0 or length < 0 or pos + length > end:
                    return i
                values[f, i] = pos
                lengths[f, i] = length
                pos += length
            else:
                width = 8 if kind == DOUBLE else 4 if kind == FLOAT else 1
                if pos + width > end or (kind == BOOLEAN and buf[pos] > 1):
                    return i
                values[f, i] = pos
                pos += width
            valid[f, i] = True
        if pos != end:
            return i
    return -1


def _fixed(buf: np.ndarray, where: np.ndarray, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return buf[where[:, None] + np.arange(width)].view(dtype).ravel()


def _strings(buf: np.ndarray, where: np.ndarray, lengths: np.ndarray,
             valid: np.ndarray) -> pa.Array:
    lengths = np.where(valid, lengths, 0)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise OverflowError("more string bytes than a string array holds")
    index = np.arange(offsets[-1]) + np.repeat(where - offsets[:-1], lengths)
    out = pa.Array.from_buffers(pa.string(), len(lengths),
                                [None, pa.py_buffer(offsets.astype(np.int32)),
                                 pa.py_buffer(buf[index])])
    out.validate(full=True)  # UTF-8: ArrowInvalid otherwise
    return out if valid.all() else pc.if_else(pa.array(valid), out,
                                               pa.scalar(None, pa.string()))


def _column(field: pa.Field, kind: int, logical: str | None, buf: np.ndarray,
            values: np.ndarray, lengths: np.ndarray, valid: np.ndarray) -> pa.Array | None:
    mask = None if valid.all() else ~valid
    name = field.name
    if name == "timestamp":
        if kind != LONG or not valid.all():
            return None  # a missing timestamp: the fastavro path names the dead letter
        scale = _TIMESTAMP_SCALE[logical]
        if logical is not None and (values.min() < _DATETIME_US[0] // scale or
                                    values.max() > _DATETIME_US[1] // scale):
            return None  # fastavro cannot make a datetime of it: malformed there
        return pa.array(values * scale, pa.int64()).cast(field.type)
    if name in ("symbol", "exchange"):
        return _strings(buf, values, lengths, valid) if kind == STRING else None
    if name == "sequence":
        return pa.array(values, pa.int64(), mask=mask) if kind == LONG else None
    if kind not in (DOUBLE, FLOAT):
        return None  # e.g. a long: Arrow's own conversion decides on the fastavro path
    numbers = _fixed(buf, np.where(valid, values, 0), "<f8" if kind == DOUBLE else "<f4")
    return pa.array(numbers.astype(np.float64), pa.float64(), mask=mask)


def decode_batch(values: list[bytes], plan_of: Any) -> pa.RecordBatch | None:
    """All of ``values`` as canonical ticks, or None when any needs the fastavro path.
    ``plan_of(schema_id)``: the writer's ``Plan`` (None: unsupported; KeyError: unknown id)."""
    n = len(values)
    sizes = np.fromiter(map(len, values), dtype=np.int64, count=n)
    if not n or sizes.min() < 5:
        return None
    # 8 bytes of padding: a null double's gather reads from position 0
    buf = np.frombuffer(b"".join(values) + bytes(8), dtype=np.uint8)
    ends = np.cumsum(sizes)
    firsts = ends - sizes
    header = buf[firsts[:, None] + np.arange(5)]
    if header[:, 0].any() or (header[:, 1:] != header[0, 1:]).any():
        return None  # not Confluent framing, or several writer schemas: the careful path
    try:
        plan = plan_of(int.from_bytes(header[0, 1:].tobytes(), "big"))
    except KeyError:
        return None
    if plan is None:
        return None
    shape = (len(plan.kinds), n)
    fields = np.zeros(shape, dtype=np.int64)
    lengths = np.zeros(shape, dtype=np.int64)
    valid = np.zeros(shape, dtype=np.bool_)
    if _scan(buf, firsts + 5, ends, plan.kinds, plan.nulls, fields, lengths, valid) >= 0:
        return None
    index = {name: i for i, name in enumerate(plan.names)}
    arrays = []
    try:
        for field in CANONICAL_TICK_SCHEMA:
            f = index.get(field.name)
            if f is None:
                if field.name in ("timestamp", "symbol"):
                    return None
                arrays.append(pa.nulls(n, field.type))
                continue
            column = _column(field, int(plan.kinds[f]), plan.logical[f], buf, fields[f],
                             lengths[f], valid[f])
            if column is None:
                return None
            arrays.append(column)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    symbols = arrays[1]
    if symbols.null_count or pc.any(pc.equal(symbols, "")).as_py():
        return None  # missing_timestamp_or_symbol: dead letters, which the fastavro path writes
    return pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_TICK_SCHEMA)
