"""A few rows as JSON text in plain Python: the same bytes as the Arrow encoder, without its
fixed cost a call.

``encode_json_values`` (tick_codec.py) formats whole columns with Arrow kernels: about 20 kernel
calls a batch whatever its size, some 400 µs for a live sink's write of a dozen signal rows.
Here each value is formatted by hand, reproducing Arrow's text exactly: floats in Arrow's
shortest form (fixed notation for a decimal exponent in [-6, 10), else ``d.ddde+N``; no
trailing ``.0``; ``-0``), NaN, infinities and nulls as ``null``, timestamps as quoted ISO 8601
in UTC with six fraction digits and a ``Z``, strings through ``json.dumps``
(tests/kafka/test_json_rows.py holds both paths to the same bytes on a hostile corpus).
A column type not reproduced here returns None: the caller takes the Arrow path.
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

import numpy as np
import pyarrow as pa

_FIRST_US = int(np.datetime64("0001-01-01T00:00:00", "us").astype(np.int64))
_LAST_US = int(np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64))
_UNIT_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
         pa.uint32(), pa.uint64())


def arrow_float_text(x: float) -> str:
    """A finite float64 as Arrow's cast to string writes it (double-conversion's shortest
    digits, exponent sign always shown, fixed notation for decimal exponents -6 to 9)."""
    text = repr(x)
    sign = "-" if text[0] == "-" else ""
    body = text[1:] if sign else text
    if "e" in body:
        mantissa, exp_text = body.split("e")
        exponent = int(exp_text)
        whole, _, frac = mantissa.partition(".")
        digits = whole + frac
    else:
        whole, _, frac = body.partition(".")
        if whole != "0":
            digits, exponent = whole + frac, len(whole) - 1
        else:
            stripped = frac.lstrip("0")
            if not stripped:  # zero
                return sign + "0"
            digits, exponent = stripped, -(len(frac) - len(stripped)) - 1
    digits = digits.rstrip("0") or "0"
    if digits != "0" and digits[0] == "0":  # never from repr, kept safe
        lead = len(digits) - len(digits.lstrip("0"))
        digits, exponent = digits[lead:], exponent - lead
    if -6 <= exponent < 10:
        point = exponent + 1
        if point <= 0:
            return sign + "0." + "0" * -point + digits
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return sign + digits[:point] + "." + digits[point:]
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def _floats(values: list[float]) -> list[str]:
    """``arrow_float_text`` of each value, ``null`` for NaN, infinities (whose repr holds an
    ``n``, as no number's does) and nulls; repr's fixed notation is Arrow's below 1e10."""
    out = []
    for x in values:
        text = repr(x)
        if "n" in text:  # nan, inf, -inf
            out.append("null")
        elif "e" in text or text.find(".") > (11 if text[0] == "-" else 10):
            out.append(arrow_float_text(x))
        else:
            out.append(text[:-2] if text.endswith(".0") else text)
    return out


def _values(col: pa.Array) -> list[Any]:
    """The column's values as Python objects, None for a null: the primitive buffer read by
    numpy when there are no nulls (Arrow's to_pylist or to_numpy cost ~0.5 µs a value)."""
    if col.null_count or pa.types.is_boolean(col.type):  # (booleans are bits)
        return col.to_pylist()
    return _buffer(col).tolist()


def _buffer(col: pa.Array) -> np.ndarray:
    """A fixed-width column's values (nulls: whatever the buffer holds there)."""
    dtype = np.dtype(col.type.to_pandas_dtype())
    return np.frombuffer(col.buffers()[1], dtype, len(col), col.offset * dtype.itemsize)


def _timestamps(col: pa.Array, scale: int) -> list[str] | None:
    """Quoted ISO 8601 text as Arrow's zone-less cast to microseconds writes it (always six
    fraction digits) with ``Z``, ``null`` for a null; None outside years 1-9999."""
    raw = np.frombuffer(col.buffers()[1], np.int64, len(col), col.offset * 8)  # (us, ms, s)
    valid = None
    if col.null_count:
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        raw = np.where(valid, raw, 0)
    if len(raw) and (raw.min() < _FIRST_US // scale or raw.max() > _LAST_US // scale):
        return None
    texts = np.datetime_as_string((raw * scale).astype("M8[us]"), unit="us").tolist()
    if valid is None:
        return [f'"{t}Z"' for t in texts]
    return [f'"{t}Z"' if ok else "null" for t, ok in zip(texts, valid.tolist(), strict=True)]


def _strings(col: pa.Array) -> list[str]:
    """``json.dumps`` of each string, ``null`` for a null; a dictionary's values once each."""
    if pa.types.is_dictionary(col.type):
        quoted = [json.dumps(v) for v in col.dictionary.to_pylist()]
        return ["null" if i is None else quoted[i] for i in _values(col.indices)]
    if col.null_count or not len(col):
        return ["null" if v is None else json.dumps(v) for v in col.to_pylist()]
    # the UTF-8 bytes between offsets: faster than to_pylist's scalar a value
    width = np.dtype(np.int64 if pa.types.is_large_string(col.type) else np.int32)
    offsets = np.frombuffer(col.buffers()[1], width, len(col) + 1,
                            col.offset * width.itemsize).tolist()
    data = col.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]
    base = offsets[0]
    return [json.dumps(data[a - base:b - base].decode())
            for a, b in itertools.pairwise(offsets)]


def _column_texts(col: pa.Array) -> list[str] | None:
    """Each value's JSON text, or None for a type this module does not reproduce."""
    kind = col.type
    if pa.types.is_null(kind):
        return ["null"] * len(col)
    if pa.types.is_timestamp(kind):
        scale = _UNIT_SCALE.get(kind.unit)
        if scale is None:  # ns: Arrow's cast to us decides (and may refuse)
            return None
        return _timestamps(col, scale)
    if pa.types.is_dictionary(kind):
        if not (pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)):
            return None
        return _strings(col)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings(col)
    if kind == pa.float64():
        values = _buffer(col) if not col.null_count else col.to_numpy(zero_copy_only=False)
        return _floats(values.tolist())  # (a null is NaN there: null)
    if kind in _INTS:
        return ["null" if v is None else str(v) for v in _values(col)]
    if pa.types.is_boolean(kind):
        return ["null" if v is None else "true" if v else "false" for v in _values(col)]
    return None  # float32, decimals, dates...: Arrow's text


@functools.lru_cache(maxsize=64)
def _template(names: tuple[str, ...]) -> str:
    """``{"a":%s,"b":%s}`` for ``names``: one ``%`` a row."""
    return "{" + ",".join(json.dumps(n).replace("%", "%%") + ":%s" for n in names) + "}"


def encode_json_rows_small(batch: pa.RecordBatch | pa.Table,
                           names: list[str]) -> list[bytes] | None:
    """One JSON object per row over ``names``, as bytes; None when a column's type (or a
    timestamp out of years 1-9999) is not reproduced here."""
    columns: list[list[str]] = []
    for name in names:
        col = batch.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        try:
            texts = _column_texts(col)
        except (ValueError, OverflowError):
            return None
        if texts is None:
            return None
        columns.append(texts)
    if not names:
        return [b"{}"] * batch.num_rows
    template = _template(tuple(names))
    return [(template % row).encode() for row in zip(*columns, strict=True)]
