"""The JSON tick decoder's first path: one compiled scan of a batch of plain ticks.

msgspec reads a 258-byte tick in about 0.65 µs and building Arrow columns from its objects
costs 0.5 µs more (bench/live_decode.py). Ticks are flat objects, so ``decode_scanned`` reads
every value in one numba pass (no Python object a tick): each string's place, and each number's
double where one exact IEEE operation gives it (Clinger's fast path: at most 2**53 in its
digits, a power of ten up to 1e22); the other numbers' texts (17 digits, say) are cast by
Arrow's parser, the one its JSON reader uses, and timestamps as ``tick_json_fast`` does. About
0.1 µs a tick less than msgspec in the drain. It takes a batch only when every value is one
object of plain fields: strings without escapes, JSON numbers (integers for ``sequence``, none
``-0``), nulls, no field twice, no nested value; anything else returns ``None`` and the msgspec
and Arrow paths decide, with their reasons (tests/kafka/test_tick_json_fast.py runs its corpus
and generated ticks through ``decode_tick_values``, which tries this first, against the Arrow
path).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.tick_json_fast import _times

_NAMES = CANONICAL_TICK_SCHEMA.names
_WIDTH = max(map(len, _NAMES))
_KEYS = np.zeros((len(_NAMES), _WIDTH), dtype=np.uint8)
for _i, _name in enumerate(_NAMES):
    _KEYS[_i, :len(_name)] = np.frombuffer(_name.encode(), dtype=np.uint8)
_KEY_LENGTHS = np.array([len(n) for n in _NAMES], dtype=np.int64)
# what each field's value must be: 0 a string, 1 a number, 2 an integer
_STRING, _NUMBER, _INTEGER = 0, 1, 2
_WANTS = np.array([_STRING, _STRING, _STRING, *[_NUMBER] * 7, _INTEGER], dtype=np.int64)
assert _NAMES[-1] == "sequence" and _NAMES[:3] == ["timestamp", "symbol", "exchange"]


@njit(cache=True, nogil=True)
def _space(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end and (buf[pos] == 32 or buf[pos] == 9 or buf[pos] == 10 or buf[pos] == 13):
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def _digits(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end and 48 <= buf[pos] <= 57:
        pos += 1
    return pos


_POWERS = np.array([10.0 ** k for k in range(23)])  # exact doubles: Clinger's fast path
_EXACT = 2**53


@njit(cache=True, nogil=True)
def _number(buf: np.ndarray, pos: int, end: int, powers: np.ndarray) -> tuple[int, float, int]:
    """A JSON number at ``pos``: (its end, its double, kind): kind 1 an integer of at most
    2**53 (exactly its double), 0 another number whose double one exact IEEE operation gives
    (Clinger's fast path), -1 a number that needs a real parser (more than 2**53 in its
    digits, or a power of ten past 1e22; its double is not given). The end is -1 when it is
    not a JSON number, or is the integer ``-0`` (msgspec and Arrow read that differently)."""
    start = pos
    negative = pos < end and buf[pos] == 45  # -
    if negative:
        pos += 1
    if pos >= end or not 48 <= buf[pos] <= 57:
        return -1, 0.0, 0
    digits = np.uint64(0)
    exponent = 0
    significant = 0
    if buf[pos] == 48:
        pos += 1
    else:
        while pos < end and 48 <= buf[pos] <= 57:
            digits = digits * np.uint64(10) + np.uint64(buf[pos] - 48)
            significant += 1
            pos += 1
    integer = 1
    if pos < end and buf[pos] == 46:  # .
        pos += 1
        first = pos
        while pos < end and 48 <= buf[pos] <= 57:
            if digits or buf[pos] != 48:
                digits = digits * np.uint64(10) + np.uint64(buf[pos] - 48)
                significant += 1
            exponent -= 1
            pos += 1
        if pos == first:
            return -1, 0.0, 0
        integer = 0
    if pos < end and (buf[pos] == 101 or buf[pos] == 69):  # e E
        pos += 1
        sign = 1
        if pos < end and (buf[pos] == 43 or buf[pos] == 45):
            sign = -1 if buf[pos] == 45 else 1
            pos += 1
        first = pos
        power = 0
        while pos < end and 48 <= buf[pos] <= 57:
            if power < 100_000:
                power = power * 10 + (buf[pos] - 48)
            pos += 1
        if pos == first:
            return -1, 0.0, 0
        exponent += sign * power
        integer = 0
    if integer and negative and pos - start == 2 and buf[start + 1] == 48:
        return -1, 0.0, 0  # the integer -0
    if significant > 16 or digits > np.uint64(9007199254740992):
        return pos, 0.0, -1
    value = float(digits)
    if digits:
        if exponent > 22 or exponent < -22:
            return pos, 0.0, -1
        value = value * powers[exponent] if exponent >= 0 else value / powers[-exponent]
    return pos, -value if negative else value, integer


@njit(cache=True, nogil=True)
def _string(buf: np.ndarray, pos: int, end: int) -> int:
    """The closing quote of a string whose opening quote is at ``pos - 1``; -1 when it holds
    an escape or a control character (the other paths decode those)."""
    while pos < end:
        c = buf[pos]
        if c == 34:
            return pos
        if c == 92 or c < 32:
            return -1
        pos += 1
    return -1


@njit(cache=True, nogil=True)
def _key(buf: np.ndarray, pos: int, length: int, keys: np.ndarray,
         key_lengths: np.ndarray) -> int:
    for k in range(keys.shape[0]):
        if key_lengths[k] == length:
            same = True
            for j in range(length):
                if buf[pos + j] != keys[k, j]:
                    same = False
                    break
            if same:
                return k
    return -1


@njit(cache=True, nogil=True)
def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: np.ndarray,
          key_lengths: np.ndarray, wants: np.ndarray, powers: np.ndarray, where: np.ndarray,
          lengths: np.ndarray, numbers: np.ndarray) -> int:
    """Each field of every value: a string's position and length, a number's value (length
    0; or its text's position and length when it needs a real parser), null or missing
    (length -1). Returns the index of the first value that is not a plain
    tick object, or -1."""
    for i in range(starts.shape[0]):
        end = ends[i]
        pos = _space(buf, starts[i], end)
        if pos >= end or buf[pos] != 123:  # {
            return i
        pos = _space(buf, pos + 1, end)
        if pos < end and buf[pos] == 125:  # {}
            pos += 1
        else:
            while True:
                if pos >= end or buf[pos] != 34:
                    return i
                close = _string(buf, pos + 1, end)
                if close < 0:
                    return i
                k = _key(buf, pos + 1, close - pos - 1, keys, key_lengths)
                if k >= 0 and (where[k, i] != 0 or lengths[k, i] != -1):
                    return i  # a field twice
                pos = _space(buf, close + 1, end)
                if pos >= end or buf[pos] != 58:  # :
                    return i
                pos = _space(buf, pos + 1, end)
                if pos >= end:
                    return i
                c = buf[pos]
                if c == 34:  # a string
                    close = _string(buf, pos + 1, end)
                    if close < 0 or (k >= 0 and wants[k] != 0):
                        return i
                    if k >= 0:
                        where[k, i] = pos + 1
                        lengths[k, i] = close - pos - 1
                    pos = close + 1
                elif c == 110:  # null
                    if pos + 4 > end or buf[pos + 1] != 117 or buf[pos + 2] != 108 or \
                            buf[pos + 3] != 108:
                        return i
                    if k >= 0:
                        where[k, i] = -1  # seen, null
                    pos += 4
                else:
                    after, value, kind = _number(buf, pos, end, powers)
                    if after < 0 or (k >= 0 and (wants[k] == 0 or
                                                 (wants[k] == 2 and kind != 1))):
                        return i
                    if k >= 0:  # a number the fast path cannot give: its text (length > 0)
                        where[k, i] = pos
                        lengths[k, i] = after - pos if kind < 0 else 0
                        numbers[k, i] = value
                    pos = after
                pos = _space(buf, pos, end)
                if pos < end and buf[pos] == 44:  # ,
                    pos = _space(buf, pos + 1, end)
                    continue
                if pos < end and buf[pos] == 125:  # }
                    pos += 1
                    break
                return i
        if _space(buf, pos, end) != end:
            return i
    return -1


@njit(cache=True, nogil=True)
def _gather(buf: np.ndarray, where: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
            data: np.ndarray) -> None:
    """Copy every field's texts to ``data`` at ``offsets``, value by value (one pass over the
    values' bytes, not one a column)."""
    for i in range(where.shape[1]):
        for f in range(where.shape[0]):
            out = offsets[f, i]
            src = where[f, i]
            for j in range(sizes[f, i]):
                data[out + j] = buf[src + j]


def _columns(buf: np.ndarray, where: np.ndarray, lengths: np.ndarray) -> list[pa.Array]:
    """Each field's texts as a string array (null where ``lengths`` is -1), checked to be
    UTF-8."""
    fields, n = lengths.shape
    valid = lengths >= 0
    sizes = np.where(valid, lengths, 0)
    offsets = np.zeros((fields, n + 1), dtype=np.int64)
    np.cumsum(sizes, axis=1, out=offsets[:, 1:])
    totals = offsets[:, -1]
    if totals.max() >= 2**31:
        raise OverflowError("more text than a string array holds")
    bases = np.concatenate([[0], np.cumsum(totals)])
    data = np.empty(bases[-1], dtype=np.uint8)
    _gather(buf, where, sizes, offsets + bases[:-1, None], data)
    columns = []
    for f in range(fields):
        bitmap = None if valid[f].all() else pa.array(valid[f]).buffers()[1]
        column = pa.Array.from_buffers(
            pa.string(), n, [bitmap, pa.py_buffer(offsets[f].astype(np.int32)),
                             pa.py_buffer(data[bases[f]:bases[f + 1]])])
        column.validate(full=True)  # UTF-8: ArrowInvalid otherwise
        columns.append(column)
    return columns


def _scan_one(value: bytes) -> int:
    shape = (len(_NAMES), 1)
    return _scan(np.frombuffer(value, dtype=np.uint8), np.zeros(1, dtype=np.int64),
                 np.array([len(value)], dtype=np.int64), _KEYS, _KEY_LENGTHS, _WANTS, _POWERS,
                 np.zeros(shape, dtype=np.int64), np.full(shape, -1, dtype=np.int64),
                 np.zeros(shape, dtype=np.float64))


def decode_scanned(values: list[bytes]) -> pa.RecordBatch | None:
    """All of ``values`` as a canonical-schema batch, or None when any of them is not a plain
    tick (the msgspec and Arrow paths then decide)."""
    n = len(values)
    if not n:
        return None
    if _scan_one(values[0]) >= 0:  # numbers as strings, say: no batch-sized work
        return None
    sizes = np.fromiter(map(len, values), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(values), dtype=np.uint8)
    ends = np.cumsum(sizes)
    where = np.zeros((len(_NAMES), n), dtype=np.int64)
    lengths = np.full((len(_NAMES), n), -1, dtype=np.int64)
    numbers = np.zeros((len(_NAMES), n), dtype=np.float64)
    if _scan(buf, ends - sizes, ends, _KEYS, _KEY_LENGTHS, _WANTS, _POWERS, where, lengths,
             numbers) >= 0:
        return None
    if (lengths[0] < 0).any() or (lengths[1] <= 0).any():
        return None  # missing_timestamp / missing_symbol: dead letters, from the other paths
    try:
        arrays: list[pa.Array] = _columns(buf, where[:3], lengths[:3])
        arrays[0] = _times(arrays[0])
    except (pa.ArrowException, OverflowError, ValueError):
        return None
    hard = lengths[3:-1] > 0
    if hard.any():  # e.g. 17 significant digits: Arrow's parser, the one its JSON reader uses
        rows, cols = np.nonzero(hard.T)  # row-major: each value's numbers together
        fields = cols + 3
        texts = _columns(buf, where[fields, rows][None], lengths[fields, rows][None])[0]
        try:
            parsed = texts.cast(pa.float64()).to_numpy()
        except pa.ArrowException:
            return None
        if not np.isfinite(parsed).all():
            return None  # 1e400 and the like: the Arrow path says what they are
        numbers[fields, rows] = parsed
    nulls = lengths[3:] < 0
    for f in range(3, len(_NAMES)):
        mask = nulls[f - 3] if nulls[f - 3].any() else None
        column = numbers[f] if f < len(_NAMES) - 1 else numbers[f].astype(np.int64)
        arrays.append(pa.array(column, CANONICAL_TICK_SCHEMA.field(f).type, mask=mask))
    return pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_TICK_SCHEMA)
