"""Shared plumbing for keyed single-input operators: key ids, state arrays, save/restore."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from tickflow.engine.keys import KeyIndex
from tickflow.engine.operators.base import BoundOperator, Operator, require_columns


class KeyedOperator(Operator):
    """An operator with per-key state arrays that grow with the number of keys.

    Subclasses list their per-key arrays in ``fields`` (name -> (dtype, fill)) and keep any
    scalar state in ``scalars``; both are saved and restored whole.
    """

    fields: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def __init__(self, bound: BoundOperator):
        super().__init__(bound)
        self.keys = KeyIndex()
        self.state = {name: np.full(8, fill, dtype=dt) for name, (dt, fill) in
                      self.fields.items()}
        self.scalars: dict[str, Any] = {}
        self.key_type: pa.DataType = pa.string()
        self.rows_in = 0

    def ensure_keys(self, n: int) -> None:
        cap = next(iter(self.state.values())).shape[0] if self.state else n
        if n <= cap:
            return
        new_cap = max(n, 2 * cap)
        for name, (dt, fill) in self.fields.items():
            arr = np.full(new_cap, fill, dtype=dt)
            arr[:cap] = self.state[name]
            self.state[name] = arr

    def key_ids(self, batch: pa.RecordBatch) -> np.ndarray:
        ids = self.keys.encode(batch.column(self.bound.key))
        self.ensure_keys(len(self.keys))
        return np.ascontiguousarray(ids, dtype=np.int64)

    def key_values(self, ids: np.ndarray) -> pa.Array:
        values = pa.array(self.keys.values, type=self.key_type)
        return values.take(pa.array(ids, type=pa.int64()))

    @staticmethod
    def check_stream(bound: BoundOperator, columns: dict[str, list[str]],
                     needed: list[str]) -> list[str]:
        stream = bound.streams["in"]
        cols = columns["in"]
        require_columns(bound, cols, [bound.key], stream, ("params", "key"))
        require_columns(bound, cols, ["timestamp"], stream, ("operator",))
        require_columns(bound, cols, needed, stream, ("inputs",))
        return cols

    def snapshot(self) -> dict[str, Any]:
        return {"keys": list(self.keys.values), "state": {k: v.copy() for k, v in
                                                          self.state.items()},
                "scalars": dict(self.scalars), "rows_in": self.rows_in}

    def restore(self, saved: dict[str, Any]) -> None:
        self.keys = KeyIndex()
        for value in saved["keys"]:
            self.keys.ids[value] = len(self.keys.values)
            self.keys.values.append(value)
        self.state = {k: v.copy() for k, v in saved["state"].items()}
        self.scalars = dict(saved["scalars"])
        self.rows_in = saved["rows_in"]
