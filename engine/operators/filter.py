"""``filter``: keep the rows where a rule expression holds (the rule language of signals).

Rules that remember earlier rows (``prev``, ``crosses_above``, ``crosses_below``) see every row
of their key, kept or not, so the result does not depend on how the input is split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from tickflow.engine.keys import KeyIndex
from tickflow.engine.operators.base import (
    BoundOperator,
    Operator,
    OperatorSpecError,
    floats,
    operator,
    require_columns,
)
from tickflow.engine.rules import Rule, RuleError, parse_rule
from tickflow.kernels.base import Params


class FilterParams(Params):
    rule: str = Field(min_length=1, description="rule expression, e.g. `spread_bps < 5 and "
                                                "last_size > 0`")


@operator("filter", params=FilterParams, family="filters",
          formula="the rows where the rule holds (NaN comparisons are false); all columns kept")
class Filter(Operator):
    """Rows where a rule expression holds."""

    def __init__(self, bound: BoundOperator):
        super().__init__(bound)
        self.rule: Rule = bound.extra["rule"]
        self.keys = KeyIndex()
        self.rule_state = self.rule.new_state()

    @classmethod
    def check(cls, bound: BoundOperator, columns: dict[str, list[str]]) -> list[str]:
        cols = columns["in"]
        try:
            rule = parse_rule(bound.params.rule, set(cols))
        except RuleError as exc:
            raise OperatorSpecError(f"{exc} (step '{bound.step_id}', operator filter)",
                                    ("params", "rule")) from None
        if rule.is_keyed:
            require_columns(bound, cols, [bound.key], bound.streams["in"], ("params", "rule"))
        bound.extra["rule"] = rule
        return list(cols)

    def bind(self, schemas: dict[str, pa.Schema]) -> pa.Schema:
        self.schema = schemas["in"]
        return self.schema

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        if batch.num_rows == 0:
            return []
        env = {c: floats(batch.column(c)) for c in self.rule.columns}
        if self.rule.is_keyed:
            keys = np.asarray(self.keys.encode(batch.column(self.bound.key)), dtype=np.int64)
            mask = self.rule.mask(env, keys=keys, state=self.rule_state)
        else:
            mask = self.rule.mask(env)
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), (batch.num_rows,))
        kept = batch.filter(pa.array(mask))
        return [kept] if kept.num_rows else []

    def end(self, port: str) -> list[pa.RecordBatch]:
        return []

    def snapshot(self) -> dict[str, Any]:
        ids = np.arange(self.rule_state.n_keys, dtype=np.int64)
        return {"keys": list(self.keys.values), "rule": self.rule_state.snapshot(ids)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.keys = KeyIndex()
        for value in saved["keys"]:
            self.keys.ids[value] = len(self.keys.values)
            self.keys.values.append(value)
        self.rule_state = self.rule.new_state()
        ids = np.arange(len(next(iter(saved["rule"].values()), [])), dtype=np.int64)
        self.rule_state.restore(ids, saved["rule"])
