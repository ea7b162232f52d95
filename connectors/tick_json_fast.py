"""The JSON tick decoder's fast path: msgspec decodes a batch of clean ticks.

``tick_codec.decode_tick_values`` tries this first. It takes a batch only when every value is a
single-line JSON object whose fields have their JSON types (text timestamps with a zone;
numbers as numbers, or every number of a column as a string holding a JSON number, as Coinbase
sends them) and the batch needs no dead letter; anything else returns ``None`` and the caller
falls back to its Arrow reader and bisection, so hostile input keeps that path's semantics and
reasons (tests/kafka/test_tick_json_fast.py checks the two agree). Less CPU a tick than the
Arrow reader, above all for numbers sent as strings: bench/README.md, ``live_decode.py``.
"""

from __future__ import annotations

import re
from operator import itemgetter

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec.structs import astuple

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.engine.start_up_gc import paused

_ABS_EXACT = 2**53  # larger sequences: the careful path (it parses them through a float)


class _Tick(msgspec.Struct, gc=False):
    """One tick as msgspec reads it; field order is the canonical schema's."""

    timestamp: str | None = None
    symbol: str | None = None
    exchange: str | None = None
    price: float | None = None
    best_bid: float | None = None
    best_ask: float | None = None
    best_bid_size: float | None = None
    best_ask_size: float | None = None
    last_size: float | None = None
    volume_24h: float | None = None
    sequence: int | None = None


class _TextTick(msgspec.Struct, gc=False):
    """A tick whose numbers may be sent as JSON strings (Coinbase does)."""

    timestamp: str | None = None
    symbol: str | None = None
    exchange: str | None = None
    price: float | str | None = None
    best_bid: float | str | None = None
    best_ask: float | str | None = None
    best_bid_size: float | str | None = None
    best_ask_size: float | str | None = None
    last_size: float | str | None = None
    volume_24h: float | str | None = None
    sequence: int | str | None = None


_DECODER = msgspec.json.Decoder(_Tick)
_TEXT_DECODER = msgspec.json.Decoder(_TextTick)
# a number in a string is read only when it is written as JSON writes numbers (the Arrow path
# unquotes those; "1." or " 1" it explains one by one, with its own verdicts)
_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"
_JSON_INTEGER = r"^-?(?:0|[1-9][0-9]*)$"
_FIRST = itemgetter(0)
# ``-0`` written as an integer, or as a string the Arrow path may unquote to one (a false
# alarm, e.g. inside a longer string, only costs the fast path)
_INTEGER_MINUS_ZERO = re.compile(rb'-0\s*[,}\]"]')
_TIMESTAMP = CANONICAL_TICK_SCHEMA.field("timestamp").type
_PAST_MICROSECONDS = r"(\.[0-9]{6})[0-9]+"  # tick_codec._timestamp's truncation
# the rows as Arrow converts msgspec's tuples (timestamps as text, cast in one call)
_ROW = pa.struct([pa.field("timestamp", pa.string()), *list(CANONICAL_TICK_SCHEMA)[1:]])
_TEXT_ROW = pa.struct([pa.field(name, pa.string()) for name in CANONICAL_TICK_SCHEMA.names])
assert tuple(_Tick.__struct_fields__) == tuple(CANONICAL_TICK_SCHEMA.names)


def _typed_columns(text: bytes, n: int) -> list[pa.Array] | None:
    ticks = _DECODER.decode_lines(text)
    if len(ticks) != n:
        return None
    return pa.array(list(map(astuple, ticks)), _ROW).flatten()


def _text_columns(text: bytes, n: int) -> list[pa.Array] | None:
    """As ``_typed_columns`` where numbers may be strings: a column all numbers or all
    strings (or nulls), each string a JSON number."""
    ticks = _TEXT_DECODER.decode_lines(text)
    if len(ticks) != n:
        return None
    rows = list(map(astuple, ticks))
    del ticks
    try:  # every number a string (or null): one conversion
        texts = pa.array(rows, _TEXT_ROW).flatten()
        return [*texts[:3], *(_parse(col, field.type)
                              for col, field in zip(texts[3:], _ROW.fields[3:], strict=True))]
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    columns = list(zip(*rows, strict=True))  # some columns numbers, some strings
    return [pa.array(col, field.type) if i < 3 else _numbers(col, field.type)
            for i, (col, field) in enumerate(zip(columns, _ROW.fields, strict=True))]


def _numbers(column: tuple[object, ...], kind: pa.DataType) -> pa.Array:
    """A numeric column from numbers, or from strings holding JSON numbers (ValueError, or an
    Arrow error, for anything else)."""
    try:
        return pa.array(column, kind)
    except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError):
        pass
    return _parse(pa.array(column, pa.string()), kind)  # mixed: an Arrow error


def _parse(texts: pa.Array, kind: pa.DataType) -> pa.Array:
    """Strings holding JSON numbers as ``kind`` (ValueError for any other string)."""
    grammar = _JSON_INTEGER if pa.types.is_integer(kind) else _JSON_NUMBER
    if not pc.all(pc.match_substring_regex(texts, grammar), min_count=0).as_py():
        raise ValueError("a string that is not a JSON number")
    out = texts.cast(kind)
    if pa.types.is_floating(kind) and not pc.all(pc.is_finite(out), min_count=0).as_py():
        raise ValueError("a number out of range")  # the Arrow path explains it
    return out


def _times(texts: pa.Array) -> pa.Array:
    """ISO 8601 texts as the timestamp column. A text without a zone fails the cast and the
    batch goes to the careful path (which reads it as UTC); digits past microseconds are
    dropped, as the careful path's per-value explanation drops them (its Arrow reader refuses
    them: a batch of such ticks cost it 570 µs a tick)."""
    try:
        return texts.cast(_TIMESTAMP)
    except pa.ArrowInvalid:
        return pc.replace_substring_regex(texts, _PAST_MICROSECONDS, r"\1").cast(_TIMESTAMP)


def decode_clean(values: list[bytes]) -> pa.RecordBatch | None:
    """All of ``values`` as a canonical-schema batch, or None when any of them needs a closer
    look (the Arrow path then decides, with its reasons)."""
    n = len(values)
    text = b"\n".join(values)
    # one line each, each an object: what the Arrow path's first read requires too
    try:
        firsts = bytes(map(_FIRST, values))  # the first byte of each (an empty one: IndexError)
    except IndexError:
        return None
    if firsts.count(b"{") != n or text.count(b"\n") != n - 1:
        return None
    try:
        # no collection while the row tuples live: they hold no cycles, and in the live job's
        # large heap the passes 20,000 new tuples set off cost more than the tuples save
        # (0.1-0.2 µs a tick against 11 list comprehensions, in the drain)
        with paused():
            try:
                arrays = _typed_columns(text, n)
            except msgspec.ValidationError:  # numbers as strings, or not a tick at all
                arrays = _text_columns(text, n)
        if arrays is None:
            return None
        arrays[0] = _times(arrays[0])
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        return None
    timestamps, symbols, sequences = arrays[0], arrays[1], arrays[-1]
    if timestamps.null_count or symbols.null_count:
        return None  # missing_timestamp / missing_symbol: dead letters
    if pc.any(pc.equal(symbols, "")).as_py():
        return None  # missing_symbol: a dead letter, which the careful path writes
    if any(pc.any(pc.equal(col, 0.0)).as_py() for col in arrays[3:-1]) and \
            _INTEGER_MINUS_ZERO.search(text):
        return None  # msgspec reads the integer -0 as 0.0, Arrow as -0.0, json.loads as 0
    if sequences.null_count < n:
        low, high = pc.min_max(sequences).values()
        if low.as_py() < -_ABS_EXACT or high.as_py() > _ABS_EXACT:
            return None
    return pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_TICK_SCHEMA)
