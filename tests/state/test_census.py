"""The census of a chunk's keys (engine/state/census.py) and keys moved row to row between
width tiers: the same answers and the same state as the numpy paths they replace."""

from __future__ import annotations

import numpy as np
import pytest

from tickflow.engine.state import tiers
from tickflow.engine.state.census import overflowing, raise_to, seen_scratch, tally
from tickflow.engine.testing import _bind


def test_tally_counts_each_key_below_the_bound_and_leaves_its_scratch_zeroed():
    rng = np.random.default_rng(5)
    key = rng.integers(-3, 1_200, 20_000)
    seen = np.zeros(1_500, dtype=np.int32)
    uniq, rows = tally(key, seen, 1_000)
    inside = key[(key >= 0) & (key < 1_000)]
    first = np.unique(inside, return_index=True)[1]
    assert uniq.tolist() == inside[np.sort(first)].tolist()  # first-seen order
    assert rows.tolist() == np.bincount(inside, minlength=1_000)[uniq].tolist()
    assert not seen.any()
    assert seen_scratch(10).size >= 10 and not seen_scratch(5_000).any()


def test_the_census_reads_each_key_in_its_own_tier():
    uniq = np.array([4, 0, 2, 3])
    tier_of = np.array([0, 0, 1, 2, 1], dtype=np.int8)
    local = np.array([0, 0, 1, 0, 0])
    counts = [np.array([7, 0, 0, 0, 0]), np.array([0, 12, 0]), np.array([30])]
    need = np.zeros(4, dtype=np.int64)
    for i, c in enumerate(counts):
        raise_to(need, uniq, tier_of, i, local, c)
    assert need.tolist() == [0, 7, 12, 30]  # key 4 is row 0 of tier 1, key 2 its row 1
    assert overflowing(need + 2, uniq, tier_of, np.array([8, 16, 32])).tolist() == [1]
    none = np.zeros(0, dtype=np.int8)  # no side tier: every key in tier 0
    need[:] = 0
    raise_to(need, uniq, none, 0, local, np.arange(5) * 5)
    assert need.tolist() == [20, 0, 10, 15]
    assert overflowing(need, uniq, none, np.array([12])).tolist() == [0, 3]


def _chunks(n_keys: int = 600, chunks: int = 12, seed: int = 2):
    """Keys of very different row counts, so keys climb through side tiers 16, 32 and 64;
    the busy keys change halfway, so rows that keys left are given to the next ones."""
    rng = np.random.default_rng(seed)
    p = rng.pareto(1.2, n_keys) + 0.05
    for i in range(chunks):
        if i == chunks // 2:
            p = p[::-1]
        key = rng.choice(n_keys, 3_000, p=p / p.sum())
        x = rng.normal(0, 1e-3, key.size)
        x[rng.random(key.size) < 0.03] = np.nan
        yield key, x


def _states(monkeypatch: pytest.MonkeyPatch, direct: bool):
    """Each chunk's outputs and state snapshot of ``autocorr`` (window 100, lag 5)."""
    if not direct:
        monkeypatch.setattr(tiers.Tier, "copyable", lambda *a: False)
    takes, reused = [], []
    take, claim = tiers.Tier.take, tiers.Tier.claim
    monkeypatch.setattr(tiers.Tier, "take", lambda self, *a: takes.append(1) or take(self, *a))
    monkeypatch.setattr(tiers.Tier, "claim",
                        lambda self, k: reused.append(min(self.free.size, k.size)) or claim(self, k))
    bound = _bind("autocorr", None, None)
    state = bound.new_state()
    seen = []
    for key, x in _chunks():
        out = bound.run(key, np.arange(key.size, dtype=np.int64), [x], state)
        snap = state.snapshot(np.arange(state.n_keys))
        seen.append((out, snap, state.describe()))
    monkeypatch.undo()
    return seen, len(takes), sum(reused)


def test_keys_moved_row_to_row_hold_what_the_gather_and_put_gave(monkeypatch):
    direct, takes, reused = _states(monkeypatch, direct=True)
    fallback, none, _ = _states(monkeypatch, direct=False)
    assert takes > 0 and none == 0 and reused > 0  # rows padded over what a key left behind
    assert any(", " in d for _, _, d in direct)  # side tiers were in use
    for (out_a, snap_a, tiers_a), (out_b, snap_b, tiers_b) in zip(direct, fallback, strict=True):
        assert tiers_a == tiers_b
        for a, b in zip(out_a, out_b, strict=True):
            assert a.tobytes() == b.tobytes()
        assert snap_a.keys() == snap_b.keys()
        for name in snap_a:
            assert snap_a[name].shape == snap_b[name].shape, name
            assert snap_a[name].tobytes() == snap_b[name].tobytes(), name
