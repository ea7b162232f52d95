"""A uniform sample of rows of every numeric column, mergeable, for the research report.

Why a sample: a research report must describe whatever features a job computes without
holding its rows, and at a small fraction of the run's cost; exact moments of 50 columns cost
as much as a tenth of a research run, a sample costs a random draw per row. It is a bottom-k
sample: each row draws a uniform key and the k smallest keys are kept, so it is uniform over
all rows seen and merges exactly (the k smallest keys of two samples' union are the sample of
the union), across batches and Dask partitions alike. The statistics, quantiles, correlations
and histograms of the features are computed from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SAMPLE_ROWS = 20_000


class FeatureStats:
    """A bottom-k row sample of the numeric columns, with their symbol codes."""

    def __init__(self, sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> None:
        self.names: list[str] = []
        self.k = sample_rows
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0)
        self._rows: dict[str, np.ndarray] = {}
        self._codes = np.zeros(0, dtype=np.int64)
        self._threshold = 1.0
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]] = []
        self._pending_len = 0
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

    def add(self, keys: np.ndarray, columns: dict[str, np.ndarray], codes: np.ndarray) -> None:
        """The drawn rows: their keys, float64 columns (NaN = missing) and symbol codes.

        Parts are held as they come and joined only when they outgrow the sample: joining
        50 columns per batch cost more than everything else the sink does per row.
        """
        for name in columns:
            if name not in self._rows:
                self.names.append(name)
                self._rows[name] = np.full(len(self._keys), np.nan)
        self._pending.append((keys, columns, codes))
        self._pending_len += len(keys)
        if len(self._keys) + self._pending_len > 2 * self.k:
            self._trim()

    def _join(self) -> None:
        if not self._pending:
            return
        parts, self._pending, self._pending_len = self._pending, [], 0
        self._rows = {name: np.concatenate([self._rows[name], *(
            cols[name] if name in cols else np.full(len(k), np.nan) for k, cols, _ in parts)])
            for name in self.names}
        self._keys = np.concatenate([self._keys, *(k for k, _, _ in parts)])
        self._codes = np.concatenate([self._codes, *(c for _, _, c in parts)])

    def _trim(self) -> None:
        self._join()
        if len(self._keys) <= self.k:
            return
        keep = np.argpartition(self._keys, self.k)[:self.k]
        keep.sort()
        self._keys = self._keys[keep]
        self._codes = self._codes[keep]
        self._rows = {k: v[keep] for k, v in self._rows.items()}
        self._threshold = float(self._keys.max())

    def merge(self, other: FeatureStats, code_map: np.ndarray) -> None:
        """Add ``other``'s sample (its symbol codes mapped through ``code_map``)."""
        other._join()
        codes = code_map[other._codes] if len(other._codes) else other._codes
        self.add(other._keys, other._rows, codes)
        self.seen += other.seen
        self._threshold = min(self._threshold, other._threshold)  # exact: see the docstring
        self._trim()

    def sample(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The sampled rows (columns) and their symbol codes, at most ``k`` of them."""
        self._trim()
        order = np.argsort(self._keys, kind="stable")
        return {k: v[order] for k, v in self._rows.items()}, self._codes[order]

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
