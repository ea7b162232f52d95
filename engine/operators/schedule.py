"""``optimal_ac_schedule``: the Almgren-Chriss (2001) liquidation schedule, per key.

With linear temporary impact ``eta`` and risk aversion ``lambda_risk``, selling ``quantity``
over ``horizon`` in ``slices`` equal steps ``tau = horizon / slices``::

    kappa = arccosh(1 + lambda sigma^2 tau^2 / (2 eta)) / tau
    x_j   = Q sinh(kappa (T - t_j)) / sinh(kappa T),   t_j = j tau,  j = 0..N
    n_j   = x_{j-1} - x_j                              (shares traded in slice j = 1..N)

``lambda_risk = 0`` gives kappa = 0 and the straight-line TWAP ``x_j = Q (1 - t_j / T)``.
``horizon`` and ``sigma`` share one time unit (e.g. days and daily volatility).

As an operator it emits the schedule once per key, at the key's first row: ``slices`` rows
with that row's timestamp and key, ``slice`` j, ``t`` = t_j, ``holdings`` x_j, ``trade`` n_j.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from tickflow.engine.operators.base import BoundOperator, operator
from tickflow.engine.operators.keyed import KeyedOperator
from tickflow.kernels.base import Params

SCHEDULE_COLUMNS = ("slice", "t", "holdings", "trade")


class AcScheduleParams(Params):
    quantity: float = Field(gt=0, description="shares (or coins) to liquidate, Q")
    horizon: float = Field(gt=0, description="time to liquidate, T (the unit of sigma)")
    slices: int = Field(10, ge=1, le=100_000, description="number of equal trading slices, N")
    sigma: float = Field(ge=0, description="volatility per unit of time")
    eta: float = Field(gt=0, description="linear temporary impact coefficient")
    lambda_risk: float = Field(0.0, ge=0, description="risk aversion lambda (0 = TWAP)")
    key: str | None = Field(None, description="key column (default: the job's key)")


def ac_schedule(quantity: float, horizon: float, slices: int, sigma: float, eta: float,
                lambda_risk: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_j, x_j, n_j) for j = 1..N, from the closed form above.

    Example:
        >>> t, x, n = ac_schedule(100.0, 1.0, 4, 0.3, 0.1, 0.0)
        >>> x.tolist(), n.tolist()
        ([75.0, 50.0, 25.0, 0.0], [25.0, 25.0, 25.0, 25.0])
    """
    tau = horizon / slices
    t = np.arange(slices + 1, dtype=np.float64) * tau
    kappa = math.acosh(1.0 + lambda_risk * sigma**2 * tau**2 / (2.0 * eta)) / tau
    if kappa * horizon < 1e-12:
        x = quantity * (slices - np.arange(slices + 1)) / slices
    else:
        # sinh(a) / sinh(b) = exp(a - b) (1 - exp(-2a)) / (1 - exp(-2b)): no overflow
        a = kappa * (horizon - t)
        b = kappa * horizon
        x = quantity * np.exp(a - b) * (-np.expm1(-2.0 * a)) / (-math.expm1(-2.0 * b))
    x[-1] = 0.0
    return t[1:], x[1:], x[:-1] - x[1:]


@operator("optimal_ac_schedule", params=AcScheduleParams, outputs=SCHEDULE_COLUMNS,
          family="execution",
          formula="Almgren-Chriss: kappa = arccosh(1 + lambda sigma^2 tau^2 / (2 eta)) / tau, "
                  "x_j = Q sinh(kappa (T - t_j)) / sinh(kappa T), n_j = x_{j-1} - x_j; "
                  "one row per slice at each key's first row")
class OptimalAcSchedule(KeyedOperator):
    """The Almgren-Chriss liquidation schedule, emitted once per key."""

    fields: ClassVar[dict[str, tuple[Any, Any]]] = {"done": (np.int8, 0)}

    def __init__(self, bound: BoundOperator):
        super().__init__(bound)
        p = self.params
        self.t, self.x, self.n = ac_schedule(p.quantity, p.horizon, p.slices, p.sigma, p.eta,
                                             p.lambda_risk)

    @classmethod
    def check(cls, bound: BoundOperator, columns: dict[str, list[str]]) -> list[str]:
        cls.check_stream(bound, columns, [])
        return ["timestamp", bound.key, *bound.output_columns]

    def bind(self, schemas: dict[str, pa.Schema]) -> pa.Schema:
        schema = schemas["in"]
        self.key_type = schema.field(self.bound.key).type
        self.ts_type = schema.field("timestamp").type
        slice_, t, x, n = self.bound.output_columns
        self.schema = pa.schema([pa.field("timestamp", self.ts_type),
                                 pa.field(self.bound.key, self.key_type),
                                 pa.field(slice_, pa.int64()), pa.field(t, pa.float64()),
                                 pa.field(x, pa.float64()), pa.field(n, pa.float64())])
        return self.schema

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        key = self.key_ids(batch)
        self.rows_in += batch.num_rows
        done = self.state["done"]
        first_rows: list[int] = []
        for i in np.unique(key, return_index=True)[1]:
            if not done[key[i]]:
                done[key[i]] = 1
                first_rows.append(int(i))
        if not first_rows:
            return []
        rows = np.repeat(np.sort(np.array(first_rows, dtype=np.int64)), self.t.shape[0])
        m = len(first_rows)
        assert self.schema is not None
        arrays: list[Any] = [
            batch.column("timestamp").take(pa.array(rows)),
            self.key_values(key[rows]),
            pa.array(np.tile(np.arange(1, self.t.shape[0] + 1, dtype=np.int64), m)),
            pa.array(np.tile(self.t, m)), pa.array(np.tile(self.x, m)),
            pa.array(np.tile(self.n, m))]
        return [pa.RecordBatch.from_arrays(arrays, schema=self.schema)]

    def end(self, port: str) -> list[pa.RecordBatch]:
        return []
