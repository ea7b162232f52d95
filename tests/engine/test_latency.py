"""The live latency histogram: percentiles within 1% of exact ones, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from tickflow.engine.latency import LatencyHistogram


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_percentiles_match_numpy_within_one_percent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.exp(rng.normal(np.log(2_000), 1.5, 200_000)).astype(np.int64)  # µs
    hist = LatencyHistogram()
    for chunk in np.array_split(values, 37):  # batch by batch, as the live observer adds
        hist.add(chunk)
    assert hist.count == values.size
    for q in (1, 50, 90, 99, 99.9):
        exact = np.percentile(values, q, method="inverted_cdf")
        assert hist.percentile_us(q) == pytest.approx(exact, rel=0.011)
    assert hist.percentile_us(100) == values.max() and hist.percentile_us(0) == values.min()


def test_memory_does_not_grow_with_ticks() -> None:
    hist = LatencyHistogram()
    size = hist.counts.nbytes
    for _ in range(50):
        hist.add(np.full(100_000, 1_500, dtype=np.int64))
    assert hist.counts.nbytes == size < 32_000 and hist.count == 5_000_000
    assert hist.percentile_us(99) == 1_500  # clamped to the exact min/max


def test_skewed_clocks_and_merging() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    a.add(np.array([-50, 0, 0, 10], dtype=np.int64))  # a producer clock ahead of ours
    b.add(np.array([1_000, 2_000], dtype=np.int64))
    assert a.percentile_us(50) <= 0
    a.merge(b)
    assert a.count == 6 and a.percentile_us(100) == 2_000
    assert np.isnan(LatencyHistogram().percentile_us(50))


def test_since_a_copy_holds_only_what_came_after() -> None:
    """A run's steady part: the latencies counted after a copy taken at its first second."""
    hist = LatencyHistogram()
    hist.add(np.full(1_000, 80_000, dtype=np.int64))  # a slow start
    first = hist.copy()
    hist.add(np.arange(1_000, 11_000, dtype=np.int64))
    steady = hist.since(first)
    assert first.count == 1_000 and steady.count == 10_000 and hist.count == 11_000
    assert steady.percentile_us(99) == pytest.approx(10_900, rel=0.011)
    assert hist.percentile_us(99) == pytest.approx(80_000, rel=0.011)
    assert steady.percentile_us(100) == pytest.approx(11_000, rel=0.011)
    assert steady.percentile_us(0) == pytest.approx(1_000, rel=0.011)
