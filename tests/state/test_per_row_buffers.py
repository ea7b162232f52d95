"""Per-row buffers (``Field.per_row``): state sized by the keys' rows, outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import tickflow.kernels  # noqa: F401  (registers the built-ins)
from tickflow.engine.registry import KERNELS
from tickflow.engine.state import arrays
from tickflow.engine.state.arrays import KernelState
from tickflow.engine.testing import _bind, run_kernel
from tickflow.kernels.base import Field, ring_fields


def _per_row_kernels() -> list[str]:
    names = []
    for name in KERNELS.names():
        try:
            bound = _bind(name, None, None)
        except ValidationError:  # needs params (cross-key kernels name their keys)
            continue
        if bound.new_state().per_row:
            names.append(name)
    return names


PER_ROW = _per_row_kernels()


def _skewed(n: int = 6_000, seed: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One hot key with half the rows and 400 keys of a few rows each; some NaN inputs."""
    rng = np.random.default_rng(seed)
    keys = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 401, n))
    price = 100 + np.cumsum(rng.normal(0, 0.1, n))
    price[rng.random(n) < 0.02] = np.nan
    data = {"price": price, "log_return": rng.normal(0, 1e-3, n),
            "best_bid": price - 0.05, "best_ask": price + 0.05}
    return data, keys


def _inputs(name: str, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kernel's inputs: known columns, or positive noise (sizes, volumes) for the rest."""
    rng = np.random.default_rng(len(name))
    n = len(data["price"])
    return {c: data.get(c, rng.uniform(1, 5, n)) for c in KERNELS.get(name).inputs}


def test_the_core_row_window_kernels_declare_per_row_buffers():
    assert {"sma", "rolling_zscore", "realized_var", "rolling_std", "bollinger_bands",
            "bipower_var", "autocorr", "historical_var", "historical_cvar"} <= set(PER_ROW)


@pytest.mark.parametrize("name", PER_ROW)
def test_outputs_equal_a_whole_window_state_for_any_split(name, monkeypatch):
    data, keys = _skewed()
    data = _inputs(name, data)
    splits = [7, 900, 901, 2_500, 4_000]
    narrow = run_kernel(name, data, keys=keys, splits=splits)
    monkeypatch.setattr(arrays, "PER_ROW_START", 1 << 30)  # every key gets the whole window
    whole = run_kernel(name, data, keys=keys)
    for col, expected in whole.items():
        np.testing.assert_array_equal(narrow[col], expected, err_msg=f"{name}: {col}")


def test_the_busiest_key_does_not_set_every_keys_width():
    bound = _bind("historical_var", {"window": 100}, None)
    state = bound.new_state()
    rng = np.random.default_rng(0)
    keys = np.repeat(np.arange(5_000), 6)
    rng.shuffle(keys)
    bound.run(keys, np.arange(keys.size, dtype=np.int64), [rng.normal(0, 1e-3, keys.size)],
              state)
    assert state.width == 8  # six rows a key: 8 slots, not 100
    assert state.arrays["vals"].shape[1] == state.arrays["sorted"].shape[1] == 8
    assert "ring_ts" not in state.snapshot(np.arange(3))  # a row window keeps no timestamps
    assert state.arrays["ring_ts"].nbytes == 0
    bound.run(np.zeros(30, np.int64), np.arange(30, dtype=np.int64) + keys.size,
              [rng.normal(0, 1e-3, 30)], state)
    assert state.width == 8  # one key's 36 rows move that key to a side tier of 64
    assert [t.width for t in state.tiers] == [8, 64] and state.n_side == 1
    bound.run(np.zeros(300, np.int64), np.arange(300, dtype=np.int64) + keys.size + 30,
              [rng.normal(0, 1e-3, 300)], state)
    assert [t.width for t in state.tiers] == [8, 100]  # never past the window; 64 dropped
    assert state.describe() == "4999 x 8, 1 x 100"
    assert int(state.snapshot(np.array([0]))["ring_count"][0]) == 100


def test_tier_zero_widens_when_an_eighth_of_the_keys_need_it():
    assert arrays.WIDEN_SHARE == 8
    bound = _bind("sma", {"window": 50}, None)
    state = bound.new_state()
    keys = np.repeat(np.arange(20), 12)  # every key 12 rows: all need 16
    bound.run(keys, np.arange(keys.size, dtype=np.int64), [np.arange(keys.size, dtype=float)],
              state)
    assert [t.width for t in state.tiers] == [16] and state.n_side == 0
    for k in range(2):  # two keys of twenty fill their windows: side tier
        bound.run(np.full(40, k), np.arange(40, dtype=np.int64), [np.ones(40)], state)
    assert [t.width for t in state.tiers] == [16, 50] and state.n_side == 2  # (the window)
    # a third key makes more than an eighth: tier 0 doubles (32), then again (50) and takes
    # back the side
    bound.run(np.full(40, 2), np.arange(40, dtype=np.int64), [np.ones(40)], state)
    assert [t.width for t in state.tiers] == [50] and state.n_side == 0


def _continue(name: str, params: dict, keys: np.ndarray, x: np.ndarray, at: int,
              workers_state) -> np.ndarray:
    bound = _bind(name, params, None)
    first = bound.new_state()
    ts = np.arange(keys.size, dtype=np.int64)
    head = bound.run(keys[:at], ts[:at], [x[:at]], first)[0]
    saved = first.snapshot(np.arange(first.n_keys))
    second = workers_state(bound)
    second.restore(np.arange(first.n_keys), saved)
    tail = bound.run(keys[at:], ts[at:], [x[at:]], second)[0]
    return np.concatenate([head, tail]), first, second


@pytest.mark.parametrize("name", ["historical_cvar", "rolling_zscore", "autocorr"])
def test_a_tiered_state_saves_and_restores_bit_identically(name):
    rng = np.random.default_rng(4)
    n = 20_000
    keys = np.where(rng.random(n) < 0.05, rng.integers(0, 5, n), rng.integers(5, 3_000, n))
    x = rng.normal(0, 1e-3, n)
    params = {"window": 100} if name != "autocorr" else {"window": 100, "lag": 5}
    whole = run_kernel(name, {KERNELS.get(name).inputs[0]: x}, keys=keys,
                       ts=np.arange(n, dtype=np.int64), params=params)
    out, first, second = _continue(name, params, keys, x, 12_000, lambda b: b.new_state())
    assert len(first.tiers) > 1  # the busy keys were in side tiers when saved
    assert len(second.tiers) > 1  # and go back to side tiers on restore
    np.testing.assert_array_equal(out, next(iter(whole.values())))


def test_an_untiered_state_restores_a_tiered_snapshot():
    rng = np.random.default_rng(5)
    n = 8_000
    keys = np.where(rng.random(n) < 0.1, 0, rng.integers(1, 800, n))
    x = rng.normal(0, 1e-3, n)
    whole = run_kernel("historical_var", {"log_return": x}, keys=keys,
                       ts=np.arange(n, dtype=np.int64))
    out, first, second = _continue(
        "historical_var", {}, keys, x, 5_000,
        lambda b: KernelState(b.definition.state(b.params), tiered=False))
    assert len(first.tiers) >= 2 and len(second.tiers) == 1 and second.width == 100
    np.testing.assert_array_equal(out, whole["var"])


def test_a_narrow_snapshot_restores_into_a_wide_state_and_back():
    fields = [*ring_fields(50, per_row=True), Field("sorted", (50,), np.float64, np.nan,
                                                     "linear", per_row=True)]
    narrow = KernelState(fields)
    narrow.ensure_keys(3)
    assert narrow.arrays["vals"].shape[1] == 8
    narrow.arrays["vals"][:3] = np.arange(24.0).reshape(3, 8)
    narrow.arrays["ring_head"][:3] = [0, 2, 4]
    narrow.arrays["ring_count"][:3] = 5
    saved = narrow.snapshot(np.arange(3))
    wide = KernelState(fields)
    wide.grow_to({f.name: 50 for f in fields})
    wide.restore(np.arange(3), saved)
    assert wide.arrays["vals"].shape == (8, 50)
    # re-laid from each key's head: the oldest value first
    assert wide.arrays["vals"][1, :5].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert wide.arrays["vals"][2, :5].tolist() == [20.0, 21.0, 22.0, 23.0, 16.0]
    assert wide.arrays["ring_head"][:3].tolist() == [0, 0, 0]
    back = KernelState(fields)
    back.restore(np.arange(3), wide.snapshot(np.arange(3)))
    assert back.width == 8  # five values a key: a wide snapshot restores narrow
    assert back.arrays["vals"][2, :5].tolist() == [20.0, 21.0, 22.0, 23.0, 16.0]


def test_the_key_axis_grows_but_only_rows_in_use_are_filled():
    """It doubles while its arrays come from malloc, and grows eightfold once every one of
    them is mapped at that size (its room costs nothing then)."""
    from tickflow.engine.state.tiers import MAP_BYTES

    state = KernelState([Field("m")])
    grew_eightfold = False
    for n in range(1, 100_001, 997):
        before = state.capacity
        state.ensure_keys(n)
        mapped = before * 8 * 8 >= MAP_BYTES  # 8-byte rows, eightfold
        assert n <= state.capacity <= max(16, (8 if mapped else 2) * n)
        grew_eightfold |= state.capacity == 8 * before != before
        assert state.tiers[0].filled == max(n, 8)  # rows past n are never written
    assert grew_eightfold
    assert state.arrays["m"].shape == (state.capacity,)
    assert state.nbytes() == 99_701 * 8  # the rows in use, not the capacity


def test_a_side_tiers_small_arrays_are_mapped_and_grow_in_place():
    """A side tier's arrays (most under 1 MB at 100,000 keys) are maps grown in their own
    room, not blocks of glibc's heap left behind as holes each time they grow."""
    from tickflow.engine.state.tiers import MAP_BYTES, Tier, regrow

    fields = [*ring_fields(64, per_row=True), Field("m")]
    side = Tier(fields, 64, side=True)
    held = {name: a for name, a in side.arrays.items() if a.nbytes}
    assert held and all(a.nbytes < MAP_BYTES for a in held.values())
    assert all(regrow(a, a.shape) is not None for a in held.values())  # each its own map
    assert regrow(side.keys, side.keys.shape) is not None
    where = {name: a.ctypes.data for name, a in held.items()}
    side.arrays["vals"][3] = 7.0
    side.keys[3] = 42
    keys_at = side.keys.ctypes.data
    side.ensure_rows(1000)
    assert side.capacity >= 1000
    assert {name: side.arrays[name].ctypes.data for name in held} == where  # not copied
    assert side.keys.ctypes.data == keys_at and side.keys[3] == 42
    assert (side.arrays["vals"][3] == 7.0).all() and np.isnan(side.arrays["vals"][999]).all()
    tier0 = Tier(fields, 64)  # tier 0's small arrays still come from malloc
    assert all(regrow(a, a.shape) is None for a in tier0.arrays.values() if a.nbytes)
