"""The arithmetic of the research report: mergeable moments, grid prices, correlations.

Kept apart from the sink and the rendering so both use it without importing each other.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa


def is_numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind))


def floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64 with null -> NaN."""
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
            or pa.types.is_boolean(col.type)):
        msg = f"expected a numeric column, found {col.type}"
        raise TypeError(msg)
    arr = col.cast(pa.float64())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not arr.null_count:
        return numbers(arr, np.float64)
    values = np.frombuffer(arr.buffers()[1], dtype=np.float64, count=len(arr),
                           offset=arr.offset * 8)
    return np.where(valid_mask(arr), values, np.nan)


def valid_mask(arr: pa.Array) -> np.ndarray:
    """The rows of ``arr`` that are not null, as a bool array (from its validity bitmap)."""
    bits = arr.buffers()[0]
    if bits is None or not arr.null_count:
        return np.ones(len(arr), dtype=bool)
    unpacked = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")
    return unpacked[arr.offset:arr.offset + len(arr)].view(bool)


def numbers(arr: pa.ChunkedArray | pa.Array, dtype: type | None = None) -> np.ndarray:
    """A null-free integer or float column as numpy (a zero-copy view of one chunk when
    ``dtype`` is its own or None).

    Why not ``to_numpy``: pyarrow imports pandas on its first ``to_numpy`` (0.3-0.9 s of CPU,
    on the report's thread while the kernels run) for a library the report never uses.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    kind = np.dtype(arr.type.to_pandas_dtype())
    data = arr.buffers()[1]
    if arr.null_count or kind.kind not in "iuf" or data is None:
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)
    view = np.frombuffer(data, dtype=kind, count=len(arr), offset=arr.offset * kind.itemsize)
    return view if dtype is None or kind == dtype else view.astype(dtype)


def int_array(values: np.ndarray) -> pa.Array:
    """An int64 Arrow array over ``values`` without a copy (``pa.array`` imports pandas)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def strings(values: list[str]) -> pa.Array:
    """A string array of ``values`` (``pa.array`` of a list imports pandas, see above)."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


class Moments:
    """Per-code count / mean / M2 for the returns, merged batch by batch."""

    def __init__(self) -> None:
        self.n = np.zeros(0)
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)

    def grow(self, size: int) -> None:
        extra = size - len(self.n)
        if extra > 0:
            self.n = np.concatenate([self.n, np.zeros(extra)])
            self.mean = np.concatenate([self.mean, np.zeros(extra)])
            self.m2 = np.concatenate([self.m2, np.zeros(extra)])

    def add(self, codes: np.ndarray, x: np.ndarray, size: int,
            rows: np.ndarray | None = None) -> None:
        """Merge the values ``x`` of codes ``codes``; ``rows``: the count of each code in
        ``codes``, if known (spares a pass when no value is missing)."""
        ok = ~np.isnan(x)
        if ok.all():
            c, v = codes, x
        else:
            c, v, rows = codes[ok], x[ok], None
        if not len(v):
            return
        nb = (np.bincount(c, minlength=size) if rows is None else rows).astype(np.float64)
        has = nb > 0
        mb = np.zeros(size)
        mb[has] = np.bincount(c, weights=v, minlength=size)[has] / nb[has]
        m2b = np.bincount(c, weights=(v - mb[c]) ** 2, minlength=size)
        na = self.n
        n = na + nb
        delta = mb - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(has, self.mean + delta * np.where(has, nb / n, 0.0), self.mean)
            self.m2 = np.where(has, self.m2 + m2b + delta * delta * na * nb / n, self.m2)
        self.n = n


_DENSE_SLOTS_PER_ROW = 8  # a dense (bucket, code) table up to this many slots per row


def last_per_key(c: np.ndarray, b: np.ndarray,
                  p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last (in input order) price of each (code, bucket) pair (in no particular order).

    Rows arrive in time order, so a batch's (bucket, code) pairs fill a small dense table:
    the largest row index per slot is found with one ``np.maximum.at`` pass, a tenth of the
    cost of sorting. Sparse keys (a very fine grid) fall back to a stable sort.
    """
    n = len(c)
    if n:
        b0, span = int(b.min()), int(b.max()) - int(b.min()) + 1
        codes = int(c.max()) + 1
        if span * codes <= _DENSE_SLOTS_PER_ROW * n + 4_096:
            key = (b - b0) * codes + c
            last = np.full(span * codes, -1, dtype=np.int64)
            np.maximum.at(last, key, np.arange(n, dtype=np.int64))
            rows = last[last >= 0]
            return c[rows], b[rows], p[rows]
    order = np.lexsort((b, c))  # stable: equal keys keep input order
    c, b, p = c[order], b[order], p[order]
    last = np.ones(len(c), dtype=bool)
    last[:-1] = (c[1:] != c[:-1]) | (b[1:] != b[:-1])
    return c[last], b[last], p[last]


def ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down each column (leading NaN stay)."""
    n = x.shape[0]
    idx = np.where(np.isnan(x), 0, np.arange(n)[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(x, idx, axis=0)


def pairwise_corr(r: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of ``r`` over pairwise-complete rows (as pandas'
    ``DataFrame.corr()``): NaN where fewer than 2 rows or a zero variance.

    Why not four masked matrix products: only the columns with gaps need their own sums, and
    only over their gap rows (the sum over all rows less the gaps) or over their valid rows,
    whichever is fewer; with one ``X'X`` for the cross products this is several times faster
    and gives the same sums.
    """
    rows, k = r.shape
    valid = np.isfinite(r)
    cnt = valid.sum(axis=0)
    colmean = np.where(cnt > 0, np.where(valid, r, 0.0).sum(axis=0) / np.maximum(cnt, 1), 0.0)
    x = np.where(valid, r - colmean, 0.0)  # centring first keeps the one-pass sums accurate
    xx = x * x
    # [i, j]: over the rows where column j is valid (x_i is 0 where i is not)
    sx = np.repeat(x.sum(axis=0)[:, None], k, axis=1)
    sxx = np.repeat(xx.sum(axis=0)[:, None], k, axis=1)
    n = np.repeat(cnt[:, None].astype(np.float64), k, axis=1)
    for j in np.flatnonzero(cnt < rows):
        if 2 * (rows - cnt[j]) <= rows:  # few gaps: take them away
            gap = np.flatnonzero(~valid[:, j])
            sx[:, j] -= x[gap].sum(axis=0)
            sxx[:, j] -= xx[gap].sum(axis=0)
            n[:, j] -= valid[gap].sum(axis=0)
        else:
            ok = np.flatnonzero(valid[:, j])
            sx[:, j] = x[ok].sum(axis=0)
            sxx[:, j] = xx[ok].sum(axis=0)
            n[:, j] = valid[ok].sum(axis=0)
    sy = sx.T
    syy = sxx.T
    sxy = x.T @ x
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        corr = cov / np.sqrt(vx * vy)
    bad = (n < 2) | (vx <= 1e-14 * sxx) | (vy <= 1e-14 * syy) | ~np.isfinite(corr)
    corr = np.where(bad, np.nan, np.clip(corr, -1.0, 1.0))
    diag = np.diag(corr).copy()
    np.fill_diagonal(corr, np.where(np.isnan(diag), np.nan, 1.0))
    return corr


def to_dt(us: int | None) -> datetime | None:
    if us is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def mean_offdiag(corr: np.ndarray | None) -> float:
    if corr is None or corr.shape[0] < 2:
        return math.nan
    off = corr[~np.eye(corr.shape[0], dtype=bool)]
    off = off[~np.isnan(off)]
    return float(off.mean()) if len(off) else math.nan


def labels(symbols: list[str]) -> list[str]:
    """Axis labels: 'BTC-USD' -> 'BTC' when the short names stay distinct."""
    short = [s.split("-")[0] or s for s in symbols]
    return short if len(set(short)) == len(short) else list(symbols)


STAT_LABELS = {"observations": "ticks", "mean_return": "mean return",
               "volatility": "volatility", "mean_rsi": "mean RSI",
               "mean_imbalance": "mean L1 imbalance", "regime_changes": "regime changes"}
_STAT_FORMAT = {"observations": ",", "mean_return": "+.2e", "volatility": ".2e",
                "mean_rsi": ".2f", "mean_imbalance": ".4f", "regime_changes": ","}


def stat_cells(st: dict[str, Any], shown: list[str]) -> list[str]:
    """The per-symbol statistics ``shown``, as text (``n/a`` where there is no value)."""
    out = []
    for name in shown:
        v = st[name]
        ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
        out.append(format(v, _STAT_FORMAT[name]) if ok else "n/a")
    return out
