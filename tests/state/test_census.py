"""The census of a chunk's keys (engine/state/census.py): what the numpy it replaced gave."""

from __future__ import annotations

import numpy as np

from tickflow.engine.state.census import census, overflowing, raise_to, tally


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


def test_steps_on_the_same_chunk_share_its_census_and_a_changed_chunk_gets_its_own():
    key = np.array([3, 1, 3, 0, 3, 9])
    uniq, rows = census(key, 8)
    assert (uniq.tolist(), rows.tolist()) == ([3, 1, 0], [3, 1, 1])
    assert census(key.copy(), 8)[0] is uniq  # equal keys: the same answer, not a new tally
    key[1] = 0  # the same array changed in place is counted again
    assert [a.tolist() for a in census(key, 8)] == [[3, 0], [3, 2]]
    assert [a.tolist() for a in census(key, 10)] == [[3, 0, 9], [3, 2, 1]]  # another bound


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
