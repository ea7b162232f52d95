"""The operator contract, for every registered operator (River's registry-wide pattern):
documented, strict params, and any split of the input, any interleaving of two inputs and a
save/restore anywhere give the same rows as one batch."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.operators.test_bars import TICKS
from tickflow.engine.operators import OPERATORS
from tickflow.engine.operators.testing import assert_tables_equal, run_operator

EXAMPLES = {
    "resample_ohlc": {"interval": "30s"},
    "volume_bars": {"threshold": 15.0},
    "dollar_bars": {"threshold": 1500.0},
    "filter": {"rule": "price > 100.02 or crosses_below(price, 99.98)"},
    "optimal_ac_schedule": {"quantity": 5.0, "horizon": 2.0, "slices": 3, "sigma": 0.3,
                            "eta": 0.2, "lambda_risk": 2.0},
    "asof_join": {"right": "right", "direction": "nearest", "tolerance": "3s"},
}
QUOTES = TICKS.rename_columns(["timestamp", "symbol", "bid", "bid_size"])


def inputs(name: str, start: int, n: int) -> dict:
    if name == "asof_join":
        return {"left": TICKS.slice(start, n), "right": QUOTES.slice(start + 7, n)}
    return {"in": TICKS.slice(start, n)}


def test_every_operator_has_an_example_a_docstring_and_a_formula() -> None:
    assert sorted(EXAMPLES) == OPERATORS.names()
    for entry in OPERATORS:
        assert entry.obj.doc and entry.obj.formula, entry.name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_params_reject_unknown_keys(name: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        OPERATORS.get(name).params(**EXAMPLES[name], windw=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(EXAMPLES)), data=st.data())
def test_any_split_interleaving_and_restore_gives_the_same_rows(name: str,
                                                                data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 500), label="rows")
    tables = inputs(name, data.draw(st.integers(0, 2000), label="start"), n)
    whole = run_operator(name, tables, params=EXAMPLES[name])
    cuts = {p: data.draw(st.lists(st.integers(1, max(1, n)), max_size=6), label=f"cuts {p}")
            for p in tables}
    schedule = data.draw(st.lists(st.sampled_from(sorted(tables)), max_size=12),
                         label="schedule")
    restore_at = data.draw(st.one_of(st.none(), st.integers(1, 8)), label="restore_at")
    cut = run_operator(name, tables, params=EXAMPLES[name], chunks=cuts, schedule=schedule,
                       restore_at=restore_at)
    assert_tables_equal(cut, whole)
