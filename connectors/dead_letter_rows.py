"""Dead-letter lines for many Arrow rows at once, the same text as one ``DeadLetters.add`` a row.

Row by row, each dropped tick cost ``to_pylist`` (a datetime object for its timestamp) and two
``json.dumps`` calls on the thread that processes ticks (about 7 us a row idle, 20-48 us under
load): a replayed burst of 20,000 ticks stalled the live path for up to 1.6 s. Here each column
becomes its JSON text in Arrow compute (numbers and timestamps cast to text) and the rows are
joined element-wise, already escaped as the record's ``payload`` string, so a row costs a few
Arrow passes. A value Arrow would write differently from Python's ``json`` (a float in
exponent form, a string needing escapes) takes the json module's own encoding; a column of any
other type falls back to ``json.dumps`` of its values, which is what the row path did for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# what json writes for the Python values whose repr differs from their JSON text
_TOKENS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "None": "null"}
# a string json writes as is between quotes: printable ASCII but '"' and '\\'
_PLAIN = r"^[ !#-\[\]-~]*$"
# fewer rows than this are formatted row by row: the column passes cost 0.75-0.85 ms a batch
# whatever its size, what 50-60 rows cost one at a time
BULK_ROWS = 64
# datetime's range in microseconds since the epoch (to_pylist fails outside it)
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def _text(values: list[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _quoted(text: str) -> str:
    """``text`` as it reads inside a JSON string (the record's ``payload``)."""
    return encode_basestring(text)[1:-1]


class _Encoder:
    """JSON text of Arrow values, plain or as it reads inside the payload string (``quote``
    is then ``\\"``, and every fallback value is escaped once more)."""

    def __init__(self, escaped: bool):
        self.quote = '\\"' if escaped else '"'
        self.fix = _quoted if escaped else (lambda text: text)

    def column(self, col: pa.Array) -> pa.Array:
        """Each value's JSON text as ``json.dumps(value, default=str)`` writes it from
        ``to_pylist``: a string array without nulls."""
        t = col.type
        if pa.types.is_float64(t):
            return self._floats(col)
        if pa.types.is_float32(t):  # to_pylist widens it: 0.1f is 0.10000000149011612
            return self._floats(col.cast(pa.float64()))
        if pa.types.is_integer(t) or pa.types.is_boolean(t):  # cast writes 12, true as json
            return pc.cast(col, pa.string()).fill_null("null")
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return self._strings(col.cast(pa.string()))
        if pa.types.is_dictionary(t):  # a key column read dictionary-encoded
            return pc.take(self.column(col.dictionary), col.indices).fill_null("null")
        if pa.types.is_timestamp(t):
            out = self._timestamps(col)
            if out is not None:
                return out
        return _text([self.fix(json.dumps(v, default=str)) for v in col.to_pylist()])

    def _floats(self, col: pa.Array) -> pa.Array:
        """``repr`` of each value (json's float text), ``null`` for a missing one; few Arrow
        calls (each costs some 10-35 us whatever the batch)."""
        text = pc.cast(col, pa.string())
        x = col.to_numpy(zero_copy_only=False)  # a missing value reads NaN
        a = np.abs(x)
        with np.errstate(invalid="ignore"):
            plain = ((a >= 1e-4) & (a < 1e15)) | (a == 0)  # repr writes no exponent there
            integral = plain & (x == np.trunc(x))  # Arrow writes 60000 where repr 60000.0
        if integral.any():
            text = pc.if_else(pa.array(integral), pc.binary_join_element_wise(text, ".0", ""),
                              text)
        exponent = pc.match_substring(text, "e")  # Arrow's exponent form is not repr's
        if col.null_count:
            exponent = exponent.fill_null(True)
        odd = np.flatnonzero(~plain | exponent.to_numpy(zero_copy_only=False))
        if not len(odd):
            return text
        out, values = text.to_pylist(), col.to_pylist()
        for i in odd.tolist():  # NaN, inf, missing, exponent form: as json writes them
            word = repr(values[i])
            out[i] = _TOKENS.get(word, word)
        return _text(out)

    def _timestamps(self, col: pa.Array) -> pa.Array | None:
        """``str(datetime)`` quoted, for second to microsecond timestamps, naive or UTC."""
        t = col.type
        if t.unit == "ns" or t.tz not in (None, "UTC"):
            return None
        naive = col.cast(pa.timestamp("us"))  # the UTC wall time
        bounds = pc.min_max(naive)
        if bounds["min"].is_valid and (bounds["min"].value < _MIN_US
                                       or bounds["max"].value > _MAX_US):
            return None
        text = pc.cast(naive, pa.string())  # 2026-01-01 00:00:00.000000
        text = pc.replace_substring(text, ".000000", "")  # str() writes no zero fraction
        text = pc.binary_join_element_wise(self.quote, text,
                                           ("+00:00" if t.tz else "") + self.quote, "")
        return text.fill_null("null") if col.null_count else text

    def _strings(self, col: pa.Array) -> pa.Array:
        if col.null_count == len(col) or pc.all(pc.match_substring_regex(col, _PLAIN)).as_py():
            text = pc.binary_join_element_wise(self.quote, col, self.quote, "")
            return text.fill_null("null") if col.null_count else text
        return _text(["null" if v is None else self.fix(encode_basestring_ascii(v))
                      for v in col.to_pylist()])


def payloads(rows: pa.Table | pa.RecordBatch, escaped: bool = False) -> pa.Array:
    """``json.dumps(row, default=str)`` of every row of ``rows.to_pylist()``; with
    ``escaped``, as each reads inside a JSON string."""
    names = rows.schema.names
    encoder = _Encoder(escaped)
    if len(set(names)) != len(names) or not names:  # a row dict keeps one of duplicates
        return _text([encoder.fix(json.dumps(r, default=str)) for r in rows.to_pylist()])
    parts: list[str | pa.Array] = []
    for i, (name, col) in enumerate(zip(names, rows.columns, strict=True)):
        parts.append(("{" if i == 0 else ", ") + encoder.fix(encode_basestring_ascii(name))
                     + ": ")
        parts.append(encoder.column(col.combine_chunks() if isinstance(col, pa.ChunkedArray)
                                    else col))
    return pc.binary_join_element_wise(*parts, "}", "")


def lines(rows: pa.Table | pa.RecordBatch, reasons: Sequence[str], numbers: Sequence[int],
          now: float, source: str) -> list[str]:
    """The records ``DeadLetters.add(reason, row, source=source, row=number)`` writes at
    ``now``, without the newline (for ``BULK_ROWS`` rows or more: fewer go through ``add``)."""
    quoted = {r: encode_basestring(r) for r in set(reasons)}
    out = pc.binary_join_element_wise(
        '{"time": ' + json.dumps(now) + ', "source": ' + encode_basestring(source)
        + ', "reason": ', _text([quoted[r] for r in reasons]), ', "payload": "',
        payloads(rows, escaped=True), '", "row": ',
        pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), "}", "")
    return out.to_pylist()
