"""Mergeable statistics of every numeric column, and a uniform sample of rows, for reports.

Why: a research report must describe whatever features a job computes without holding its
rows. Moments are merged batch by batch (Chan et al.'s parallel update) and across Dask
partitions; the sample is a bottom-k sample (each row draws a uniform key and the k smallest
keys are kept), which is uniform over all rows seen and merges exactly: the union of two
samples' k smallest keys is the sample of the union. Quantiles, correlations and histograms
of the features are computed from the sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SAMPLE_ROWS = 20_000


class FeatureStats:
    """Count, missing, mean, M2, min and max per column, plus a bottom-k row sample."""

    def __init__(self, sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> None:
        self.names: list[str] = []
        self.n = np.zeros(0)
        self.missing = np.zeros(0)
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)
        self.lo = np.zeros(0)
        self.hi = np.zeros(0)
        self.k = sample_rows
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0)
        self._rows: dict[str, np.ndarray] = {}
        self._codes = np.zeros(0, dtype=np.int64)
        self._threshold = 1.0

    def _grow(self, names: list[str]) -> np.ndarray:
        idx = []
        for name in names:
            if name not in self.names:
                self.names.append(name)
                for attr, fill in (("n", 0.0), ("missing", 0.0), ("mean", 0.0), ("m2", 0.0),
                                   ("lo", math.inf), ("hi", -math.inf)):
                    setattr(self, attr, np.append(getattr(self, attr), fill))
                self._rows[name] = np.full(len(self._keys), np.nan)
            idx.append(self.names.index(name))
        return np.asarray(idx, dtype=np.int64)

    def add(self, columns: dict[str, np.ndarray], codes: np.ndarray) -> None:
        """One batch: float64 columns of equal length (NaN = missing) and symbol codes."""
        if not columns:
            return
        names = list(columns)
        idx = self._grow(names)
        rows = len(codes)
        for i, name in zip(idx, names, strict=True):
            x = columns[name]
            ok = np.isfinite(x)
            v = x[ok]
            nb = float(len(v))
            self.missing[i] += rows - nb
            if not nb:
                continue
            mb = float(v.mean())
            m2b = float(((v - mb) ** 2).sum())
            na = self.n[i]
            n = na + nb
            delta = mb - self.mean[i]
            self.mean[i] += delta * nb / n
            self.m2[i] += m2b + delta * delta * na * nb / n
            self.n[i] = n
            self.lo[i] = min(self.lo[i], float(v.min()))
            self.hi[i] = max(self.hi[i], float(v.max()))
        keys = self._rng.random(rows)
        take = np.flatnonzero(keys < self._threshold)
        if len(take):
            self._append(keys[take], {k: columns[k][take] for k in names}, codes[take])

    def _append(self, keys: np.ndarray, rows: dict[str, np.ndarray], codes: np.ndarray) -> None:
        n = len(keys)
        for name in self.names:
            part = rows.get(name)
            self._rows[name] = np.concatenate([self._rows[name], part if part is not None
                                               else np.full(n, np.nan)])
        self._keys = np.concatenate([self._keys, keys])
        self._codes = np.concatenate([self._codes, codes])
        if len(self._keys) > 2 * self.k:
            self._trim()

    def _trim(self) -> None:
        if len(self._keys) <= self.k:
            return
        keep = np.argpartition(self._keys, self.k)[:self.k]
        keep.sort()
        self._keys = self._keys[keep]
        self._codes = self._codes[keep]
        self._rows = {k: v[keep] for k, v in self._rows.items()}
        self._threshold = float(self._keys.max())

    def merge(self, other: FeatureStats, code_map: np.ndarray) -> None:
        """Add ``other``'s rows (its symbol codes mapped through ``code_map``)."""
        idx = self._grow(other.names)
        for j, i in enumerate(idx):
            nb = other.n[j]
            self.missing[i] += other.missing[j]
            if not nb:
                continue
            na = self.n[i]
            n = na + nb
            delta = other.mean[j] - self.mean[i]
            self.mean[i] += delta * nb / n
            self.m2[i] += other.m2[j] + delta * delta * na * nb / n
            self.n[i] = n
            self.lo[i] = min(self.lo[i], other.lo[j])
            self.hi[i] = max(self.hi[i], other.hi[j])
        codes = code_map[other._codes] if len(other._codes) else other._codes
        self._append(other._keys, other._rows, codes)
        self._threshold = min(self._threshold, other._threshold)  # exact: see the docstring
        self._trim()

    def sample(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The sampled rows (columns) and their symbol codes, at most ``k`` of them."""
        self._trim()
        order = np.argsort(self._keys, kind="stable")
        return {k: v[order] for k, v in self._rows.items()}, self._codes[order]

    def table(self) -> dict[str, dict[str, Any]]:
        """Per column: count, missing share, mean, std, min, quantiles (sample) and max."""
        rows, _ = self.sample()
        out = {}
        for i, name in enumerate(self.names):
            n = self.n[i]
            total = n + self.missing[i]
            s = rows[name]
            s = s[np.isfinite(s)]
            q = np.quantile(s, [0.01, 0.5, 0.99]) if len(s) else [math.nan] * 3
            out[name] = {"count": int(n), "missing": self.missing[i] / total if total else
                         math.nan, "mean": self.mean[i] if n else math.nan,
                         "std": math.sqrt(max(self.m2[i], 0.0) / (n - 1)) if n > 1
                         else math.nan, "min": self.lo[i] if n else math.nan,
                         "p1": float(q[0]), "median": float(q[1]), "p99": float(q[2]),
                         "max": self.hi[i] if n else math.nan}
        return out
