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


def test_buffers_stay_as_narrow_as_the_busiest_key_needs():
    bound = _bind("historical_var", {"window": 100}, None)
    state = bound.new_state()
    rng = np.random.default_rng(0)
    keys = np.repeat(np.arange(5_000), 6)
    rng.shuffle(keys)
    bound.run(keys, np.arange(keys.size, dtype=np.int64), [rng.normal(0, 1e-3, keys.size)],
              state)
    assert state.width == 8  # six rows a key: 8 slots, not 100
    assert state.arrays["vals"].shape[1] == state.arrays["sorted"].shape[1] == 8
    bound.run(np.zeros(30, np.int64), np.arange(30, dtype=np.int64) + keys.size,
              [rng.normal(0, 1e-3, 30)], state)
    assert state.width == 64  # one key's 36 rows widen every key (not per key, yet)
    bound.run(np.zeros(300, np.int64), np.arange(300, dtype=np.int64) + keys.size + 30,
              [rng.normal(0, 1e-3, 300)], state)
    assert state.width == 100  # never past the window
    assert int(state.arrays["ring_count"].max()) == 100


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
    assert back.width == 50
    assert back.arrays["vals"][2, :5].tolist() == [20.0, 21.0, 22.0, 23.0, 16.0]


def test_the_key_axis_grows_by_a_quarter_past_4096_keys():
    state = KernelState([Field("m")])
    for n in range(1, 100_001, 997):
        state.ensure_keys(n)
        assert n <= state.capacity <= max(8192, 1.25 * n + 1)  # (doubling: up to 2n)
    assert state.arrays["m"].shape == (state.capacity,)
