"""Operators: steps that change the number of rows (bars, as-of joins, filters, schedules).

Importing the package registers the built-ins in ``OPERATORS``; see ``base.py`` for the seam.
"""

from tickflow.engine.operators import asof, bars, filter, schedule  # noqa: F401  (registration)
from tickflow.engine.operators.base import (
    OPERATORS,
    BoundOperator,
    Operator,
    OperatorDef,
    OperatorSpecError,
)

__all__ = ["OPERATORS", "BoundOperator", "Operator", "OperatorDef", "OperatorSpecError"]
