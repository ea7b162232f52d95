"""filter (rule expressions, with per-key memory) and optimal_ac_schedule (Almgren-Chriss)
against references written from KERNELS.md; both keep the streaming contract."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.operators.test_bars import TICKS
from tickflow.engine.operators.schedule import ac_schedule
from tickflow.engine.operators.testing import assert_tables_equal, bind, run_operator

RULES = ["price > 100.05 and last_size < 1", "crosses_above(price, 100.0)",
         "prev(price, 2) < price"]


def prev_reference(keys: list, x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    seen: dict = {}
    for i, key in enumerate(keys):
        hist = seen.setdefault(key, [])
        if len(hist) >= k:
            out[i] = hist[-k]
        hist.append(x[i])
    return out


def test_filter_keeps_the_rows_where_the_rule_holds() -> None:
    price = TICKS.column("price").to_numpy()
    size = TICKS.column("last_size").to_numpy(zero_copy_only=False).astype(float)
    keys = TICKS.column("symbol").to_pylist()
    expected = {
        RULES[0]: (price > 100.05) & (size < 1),
        RULES[1]: (price > 100.0) & (prev_reference(keys, price, 1) <= 100.0),
        RULES[2]: prev_reference(keys, price, 2) < price,
    }
    for rule, mask in expected.items():
        got = run_operator("filter", {"in": TICKS}, params={"rule": rule})
        assert_tables_equal(got, TICKS.filter(pa.array(mask)))
        assert 0 < got.num_rows < TICKS.num_rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.sampled_from(RULES), data=st.data())
def test_filter_any_split_and_restore_gives_the_same_rows(rule: str,
                                                          data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 400), label="rows")
    table = TICKS.slice(data.draw(st.integers(0, 2000), label="start"), n)
    whole = run_operator("filter", {"in": table}, params={"rule": rule})
    cuts = data.draw(st.lists(st.integers(1, max(1, n)), max_size=8), label="cuts")
    restore_at = data.draw(st.one_of(st.none(), st.integers(1, 9)), label="restore_at")
    cut = run_operator("filter", {"in": table}, params={"rule": rule}, chunks={"in": cuts},
                       restore_at=restore_at)
    assert_tables_equal(cut, whole)


def test_a_filter_rule_naming_an_unknown_column_is_refused_with_a_hint() -> None:
    from tickflow.engine.operators.base import OperatorSpecError

    with pytest.raises(OperatorSpecError, match=r"unknown column 'prise'.*did you mean 'price'"):
        bind("filter", {"in": TICKS.schema.names}, params={"rule": "prise > 1"})


def ac_reference(q: float, horizon: float, n: int, sigma: float, eta: float,
                 lam: float) -> list[float]:
    """Holdings x_1..x_N from the closed form with math.sinh (KERNELS.md)."""
    tau = horizon / n
    kappa = math.acosh(1 + lam * sigma**2 * tau**2 / (2 * eta)) / tau
    if kappa == 0:
        return [q * (1 - j * tau / horizon) for j in range(1, n + 1)]
    return [q * math.sinh(kappa * (horizon - j * tau)) / math.sinh(kappa * horizon)
            for j in range(1, n + 1)]


@pytest.mark.parametrize("lam", [0.0, 1e-6, 0.5, 5.0, 200.0])
def test_ac_schedule_follows_the_closed_form(lam: float) -> None:
    t, x, n = ac_schedule(1000.0, 2.0, 8, 0.4, 0.05, lam)
    np.testing.assert_allclose(t, np.arange(1, 9) * 0.25)
    np.testing.assert_allclose(x, ac_reference(1000.0, 2.0, 8, 0.4, 0.05, lam),
                               rtol=1e-9, atol=1e-9)
    assert x[-1] == 0.0
    np.testing.assert_allclose(n.sum(), 1000.0)
    np.testing.assert_allclose(n, np.concatenate([[1000.0], x[:-1]]) - x)
    if lam > 0:  # risk aversion front-loads the selling
        assert n[0] > n[-1]


def test_ac_schedule_without_risk_aversion_is_twap_and_extreme_kappa_stays_finite() -> None:
    _, x, n = ac_schedule(90.0, 1.0, 9, 0.3, 0.1, 0.0)
    np.testing.assert_allclose(n, 10.0)
    _, x, n = ac_schedule(1.0, 1.0, 1000, 50.0, 1e-6, 1e6)
    assert np.all(np.isfinite(x)) and np.isclose(n.sum(), 1.0)


def test_ac_schedule_operator_emits_one_schedule_per_key_at_its_first_row() -> None:
    params = {"quantity": 10.0, "horizon": 1.0, "slices": 4, "sigma": 0.2, "eta": 0.1,
              "lambda_risk": 1.0}
    got = run_operator("optimal_ac_schedule", {"in": TICKS}, params=params)
    keys = TICKS.column("symbol").to_pylist()
    first = sorted({k: i for i, k in reversed(list(enumerate(keys)))}.items(),
                   key=lambda kv: kv[1])
    assert got.column("symbol").to_pylist() == [k for k, _ in first for _ in range(4)]
    assert got.column("slice").to_pylist() == [1, 2, 3, 4] * len(first)
    _, x, _ = ac_schedule(10.0, 1.0, 4, 0.2, 0.1, 1.0)
    np.testing.assert_array_equal(got.column("holdings").to_numpy()[:4], x)
    cut = run_operator("optimal_ac_schedule", {"in": TICKS}, params=params,
                       chunks={"in": [1, 2, 1500]}, restore_at=2)
    assert_tables_equal(cut, got)
