"""Parameter helpers shared by the statistics kernels (integer checks, window arguments)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from tickflow.kernels.base import (
    WindowParams,
    window_args,
)

# --------------------------------------------------------------------------- param helpers


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, found {value!r}")
    return value


def _at_least(n: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < n:
            raise ValueError(f"must be an integer >= {n}, found {value!r}")
        return value
    return check


PosInt = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_at_least(1))]
"""An integer >= 1 (booleans rejected)."""


def min_row_window(p: WindowParams, n: int) -> None:
    """Row windows shorter than ``n`` can never produce a value: reject them."""
    if isinstance(p.window, int) and p.window < n:
        raise ValueError(f"window must be >= {n} rows for this statistic, found {p.window}")


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods
