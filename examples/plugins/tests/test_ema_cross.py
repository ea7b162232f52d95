"""The example plugin's kernel, tested the way a user tests their own: with engine.testing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tickflow_example_signals.kernels  # noqa: F401  (registers ema_cross)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

RNG = np.random.default_rng(5)
N = 600
PRICES = 100 * np.exp(np.cumsum(RNG.normal(0, 0.002, N)))
PRICES[[17, 250, 251]] = np.nan
SYMBOLS = RNG.choice(["A", "B", "C"], N)
PARAMS = {"fast_span": 3, "slow_span": 9}


def reference(prices: np.ndarray, symbols: np.ndarray, fast_span: float,
              slow_span: float) -> np.ndarray:
    """A plain loop written from the kernel's docstring."""
    af, as_ = 2 / (fast_span + 1), 2 / (slow_span + 1)
    warm = math.ceil(slow_span)
    state: dict[str, list[float]] = {}
    out = np.full(len(prices), np.nan)
    for i, (p, s) in enumerate(zip(prices, symbols, strict=True)):
        if np.isnan(p):
            continue
        if s not in state:
            state[s] = [p, p, np.nan, 0]
        else:
            f, sl, last, n = state[s]
            state[s] = [af * p + (1 - af) * f, as_ * p + (1 - as_) * sl, last, n]
        f, sl, last, n = state[s]
        n += 1
        d = f - sl
        signal = 0.0
        if d != 0:
            if last < 0 < d:
                signal = 1.0
            elif d < 0 < last:
                signal = -1.0
            last = d
        state[s] = [f, sl, last, n]
        out[i] = signal if n > warm else np.nan
    return out


def test_matches_the_plain_loop() -> None:
    got = run_kernel("ema_cross", {"price": PRICES}, keys=SYMBOLS, params=PARAMS)["ema_cross"]
    want = reference(PRICES, SYMBOLS, **PARAMS)
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert (got == 1).sum() > 3 and (got == -1).sum() > 3  # the test data does cross


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, N - 1), max_size=6))
def test_any_split_gives_the_same_output(splits: list[int]) -> None:
    assert_split_invariant("ema_cross", {"price": PRICES}, keys=SYMBOLS, splits=splits,
                           params=PARAMS)


@pytest.mark.parametrize("at", [1, 200, 599])
def test_state_round_trip(at: int) -> None:
    assert_state_roundtrip("ema_cross", {"price": PRICES}, keys=SYMBOLS, at=at, params=PARAMS)


def test_params_are_validated() -> None:
    params = KERNELS.get("ema_cross").params
    with pytest.raises(ValidationError, match="slow_span must be > fast_span"):
        params(fast_span=10, slow_span=5)
    with pytest.raises(ValidationError):
        params(fast=3)
