"""Shared test data for the kernel tests: the building blocks of every module's generator.

Each helper draws from the caller's ``numpy.random.Generator`` in a fixed order, so a module's
generator still decides its own data (seed, columns, NaN rate) and gets the same arrays every
run. Edge cases are built in: a key seen once (``interleaved_keys``), repeated time stamps and
gaps that make time-window rings grow (``irregular_ts``), a burst of rows 1 us apart
(``with_burst``) and price levels far apart (``level_walk``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

T0_US = 1_700_000_000_000_000
SPAN_US = 30_000_000
"""The span of the '30s' windows the modules test time windows with."""

KEYS4 = np.array(["BTC", "ETH", "SOL", "XRP"], dtype="<U8")
SYMBOLS = np.array(["BTC-USD", "ETH-USD", "SOL-USD"])
LEVELS = {"BTC-USD": 60_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0}


# --------------------------------------------------------------------------- generators


def interleaved_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four keys in random order, and a fifth ("ONCE") on the middle row only."""
    keys = rng.choice(KEYS4, size=n)
    keys[n // 2] = "ONCE"
    return keys


def irregular_ts(rng: np.random.Generator, n: int, repeated: float = 0.1,
                 long_gaps: float = 0.0, long_gap_us: int = 20_000_000) -> np.ndarray:
    """Increasing int64 us stamps, 0.4 s apart on average (about 19 rows of each of four keys
    per 30 s); a share ``repeated`` of rows repeats the previous stamp and a share
    ``long_gaps`` comes ``long_gap_us`` late."""
    gaps = rng.exponential(400_000, n).astype(np.int64)
    if repeated:
        gaps[rng.random(n) < repeated] = 0
    if long_gaps:
        gaps[rng.random(n) < long_gaps] = long_gap_us
    return T0_US + np.cumsum(gaps)


def symbol_keys_and_ts(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three symbols in random order, stamps 1 us to 3 s apart."""
    keys = SYMBOLS[rng.integers(0, len(SYMBOLS), n)]
    ts = T0_US + np.cumsum(rng.integers(1, 3_000_000, n))
    return keys, ts


def with_burst(ts: np.ndarray, at: int = 100, rows: int = 80) -> np.ndarray:
    """A copy of ``ts`` with ``rows`` rows 1 us apart from row ``at`` (so 30 s rings grow past
    their first 16 slots), the later rows shifted to stay increasing."""
    out = ts.copy()
    out[at:at + rows] = out[at] + np.arange(rows)
    out[at + rows:] += rows
    return out


def level_walk(rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
    """Per symbol, a random walk around its level (60,000 / 3,000 / 150) rounded to cents:
    precision matters near 60,000."""
    price = np.empty(len(keys))
    for s in SYMBOLS:
        m = keys == s
        steps = rng.normal(0, LEVELS[s] * 1e-4, m.sum())
        price[m] = np.round(LEVELS[s] + np.cumsum(steps), 2)
    return price


# --------------------------------------------------------------------------- references per key


def per_key(keys: np.ndarray, fn: Callable[..., np.ndarray], *cols: np.ndarray) -> np.ndarray:
    """Apply a reference ``fn(*cols_of_one_key) -> array`` to each key's rows."""
    out = np.full(len(keys), np.nan)
    for s in np.unique(keys):
        m = keys == s
        out[m] = fn(*(c[m] for c in cols))
    return out


def per_key_valid(keys: np.ndarray, x: np.ndarray, ts: np.ndarray,
                  fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn(values, timestamps)`` on each key's valid rows, in order; NaN on NaN-input rows."""
    out = np.full(len(x), np.nan)
    for k in np.unique(keys):
        idx = np.flatnonzero((keys == k) & ~np.isnan(x))
        if len(idx):
            out[idx] = fn(x[idx], ts[idx])
    return out


def per_key_all_valid(data: Mapping[str, np.ndarray], cols: list[str] | tuple[str, ...],
                      fn: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]
                      ) -> np.ndarray:
    """``fn(columns, ts)`` on each key's rows where every input is valid; NaN elsewhere."""
    keys = data["keys"]
    valid = np.ones(len(keys), dtype=bool)
    for c in cols:
        valid &= ~np.isnan(data[c])
    out = np.full(len(keys), np.nan)
    for k in np.unique(keys):
        idx = np.flatnonzero((keys == k) & valid)
        if len(idx):
            out[idx] = fn({c: data[c][idx] for c in cols}, data["ts"][idx])
    return out


def windows(x: np.ndarray, ts: np.ndarray, window: int | str,
            min_periods: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """(j, window values) for each warm row, from the definition of row and time windows
    (a time window here is always the 30 s one: rows with ts in (t - 30 s, t])."""
    for j in range(len(x)):
        if isinstance(window, int):
            if j + 1 >= window:
                yield j, x[j - window + 1: j + 1]
        else:
            w = x[: j + 1][ts[: j + 1] > ts[j] - SPAN_US]
            if len(w) >= min_periods:
                yield j, w
