"""A uniform sample of rows of every numeric column, mergeable, for the research report.

Why a sample: a research report must describe whatever features a job computes without
holding its rows, and at a small fraction of the run's cost; exact moments of 50 columns cost
as much as a tenth of a research run, a sample costs a random draw per row. It is a bottom-k
sample: each row draws a uniform key and the k smallest keys are kept, so it is uniform over
all rows seen and merges exactly (the k smallest keys of two samples' union are the sample of
the union), across batches and Dask partitions alike. The statistics, quantiles, correlations
and histograms of the features are computed from it.

Cost: a row is converted only when its key is below the k-th smallest key so far (the
threshold is updated after every batch from the keys alone), about k (1 + ln(rows / k)) rows
in all; the sampled rows are one float64 matrix (a row per column, so each column is
contiguous), so joining and trimming are one copy each, not one per column.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.connectors.research_math import floats, int_array, is_numeric, numbers

SAMPLE_ROWS = 20_000


class SampleColumns:
    """Which columns of a batch go into the sample, worked out once per schema."""

    def __init__(self, skip: set[str]) -> None:
        self.skip = skip
        self._schema: pa.Schema | None = None
        self._plan: list[tuple[int, bool]] = []
        self.names: list[str] = []

    def rows(self, batch: pa.RecordBatch, take: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The names of the numeric columns (not in ``skip``) and their rows ``take`` as a
        float64 matrix of one row per column, null -> NaN.

        Why per column from zero-copy NumPy views: a batch gives the sample a few hundred
        rows of some fifty columns, where Arrow's per-column ``take`` and cast cost three
        times more than indexing a view of a column without nulls.
        """
        schema = batch.schema
        if self._schema is None or not (schema is self._schema or schema.equals(self._schema)):
            self._schema = schema
            self._plan = [(i, pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
                          for i, f in enumerate(schema)
                          if f.name not in self.skip and is_numeric(f.type)]
            self.names = [schema.field(i).name for i, _ in self._plan]
        out = np.empty((len(self._plan), len(take)))
        idx = None
        for j, (i, plain) in enumerate(self._plan):
            col = batch.column(i)
            if plain and not col.null_count:
                out[j] = numbers(col)[take]
                continue
            if idx is None:
                idx = int_array(take)
            out[j] = floats(col.take(idx))
        return self.names, out


class FeatureStats:
    """A bottom-k row sample of the numeric columns, with their symbol codes."""

    def __init__(self, sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> None:
        self.names: list[str] = []
        self._col: dict[str, int] = {}
        self.k = sample_rows
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0)
        self._matrix = np.zeros((0, 0))  # a row per column, a column per sampled row
        self._codes = np.zeros(0, dtype=np.int64)
        self._threshold = 1.0
        self._pending: list[tuple[np.ndarray, list[str], np.ndarray, np.ndarray]] = []
        self._pending_len = 0
        self._sample: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self.seen = 0

    def draw(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, keys) of the rows of a batch of ``rows`` that enter the sample; pass
        the rows' columns to :meth:`add`. Only these rows need converting."""
        self.seen += rows
        keys = self._rng.random(rows)
        take = np.flatnonzero(keys < self._threshold)
        if len(take) > self.k:  # rows past the batch's k smallest keys can never be kept
            take = np.sort(take[np.argpartition(keys[take], self.k)[:self.k]])
        return take, keys[take]

    def add(self, keys: np.ndarray, names: list[str], matrix: np.ndarray,
            codes: np.ndarray) -> None:
        """The drawn rows: their keys, a float64 matrix of their columns ``names`` (a row
        per column, NaN = missing) and their symbol codes. Parts are joined when they
        outgrow the sample."""
        self._sample = None
        for name in names:
            if name not in self._col:
                self._col[name] = len(self.names)
                self.names.append(name)
        self._pending.append((keys, names, matrix, codes))
        self._pending_len += len(keys)
        total = len(self._keys) + self._pending_len
        if total > 2 * self.k:
            self._trim()
        elif total >= self.k:  # later rows must beat the k-th smallest key: from keys alone
            every = np.concatenate([self._keys, *(p[0] for p in self._pending)])
            self._threshold = min(self._threshold,
                                  float(np.partition(every, self.k - 1)[self.k - 1]))

    def _widened(self, names: list[str], matrix: np.ndarray) -> np.ndarray:
        width, rows = len(self.names), matrix.shape[1]
        if names == self.names[:len(names)]:
            if len(matrix) == width:
                return matrix
            out = np.full((width, rows), np.nan)
            out[:len(matrix)] = matrix
            return out
        out = np.full((width, rows), np.nan)
        out[[self._col[n] for n in names]] = matrix
        return out

    def _join(self) -> None:
        if not self._pending:
            return
        parts, self._pending, self._pending_len = self._pending, [], 0
        have = self.names[:len(self._matrix)]
        self._matrix = np.concatenate([self._widened(have, self._matrix),
                                       *(self._widened(n, m) for _, n, m, _ in parts)], axis=1)
        self._keys = np.concatenate([self._keys, *(k for k, _, _, _ in parts)])
        self._codes = np.concatenate([self._codes, *(c for _, _, _, c in parts)])

    def _trim(self) -> None:
        self._join()
        if len(self._keys) <= self.k:
            return
        keep = np.argpartition(self._keys, self.k)[:self.k]
        keep.sort()
        self._keys = self._keys[keep]
        self._codes = self._codes[keep]
        self._matrix = self._matrix[:, keep]
        self._threshold = float(self._keys.max())

    def merge(self, other: FeatureStats, code_map: np.ndarray) -> None:
        """Add ``other``'s sample (its symbol codes mapped through ``code_map``)."""
        other._join()
        codes = code_map[other._codes] if len(other._codes) else other._codes
        self.add(other._keys, other.names[:len(other._matrix)], other._matrix, codes)
        self.seen += other.seen
        self._threshold = min(self._threshold, other._threshold)  # exact: see the docstring
        self._trim()

    def sample(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The sampled rows (columns, in key order) and their symbol codes, at most ``k``."""
        if self._sample is None:
            self._trim()
            order = np.argsort(self._keys, kind="stable")
            columns = self._widened(self.names[:len(self._matrix)], self._matrix)[:, order]
            self._sample = ({name: columns[j] for j, name in enumerate(self.names)},
                            self._codes[order])
        return self._sample

    def table(self) -> dict[str, dict[str, Any]]:
        """Per column, over the sample: rows with a value, missing share, mean, std, min,
        quantiles and max."""
        rows, _ = self.sample()
        out = {}
        for name in self.names:
            x = rows[name]
            v = x[np.isfinite(x)]
            n = len(v)
            q = np.quantile(v, [0.0, 0.01, 0.5, 0.99, 1.0]) if n else [math.nan] * 5
            out[name] = {"count": n, "missing": 1.0 - n / len(x) if len(x) else math.nan,
                         "mean": float(v.mean()) if n else math.nan,
                         "std": float(v.std(ddof=1)) if n > 1 else math.nan,
                         "min": float(q[0]), "p1": float(q[1]), "median": float(q[2]),
                         "p99": float(q[3]), "max": float(q[4])}
        return out
