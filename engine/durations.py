"""One duration grammar for every length of time in a job file.

A duration is a number and a unit with nothing else: ``250us``, ``500ms``, ``5s``, ``1.5m``,
``1h``, ``1d``. Bare numbers are accepted only by fields whose name carries their unit
(``end_when_idle_s: 30``); there the number is in that unit. Bar intervals, kernel time windows,
checkpoint intervals, backtest timeouts, report grids and tick-quality lateness all parse here,
so one spelling works everywhere and every bad value gets the same message.

This module is a leaf (pydantic and the standard library only): kernels, connectors and the
engine core all use it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
            "d": 86_400_000_000}
EXPECTED = "expected a duration like 5s, 500ms, 1m"
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)\s*$")


def parse_duration_us(value: str | int | float, *, number_unit: str | None = None,
                      allow_zero: bool = False) -> int:
    """A duration in microseconds.

    Args:
        value: a duration string (``500ms``), or a number when ``number_unit`` is given.
        number_unit: the unit of a bare number (a field named ``..._s`` passes ``"s"``);
            None refuses bare numbers.
        allow_zero: accept a zero duration (e.g. "no lateness allowed").

    Raises:
        ValueError: ``expected a duration like 5s, 500ms, 1m, found 'five'``.

    >>> parse_duration_us("500ms"), parse_duration_us(2, number_unit="s")
    (500000, 2000000)
    """
    if isinstance(value, bool):
        raise ValueError(f"{EXPECTED}, found {value!r}")
    if isinstance(value, int | float) and number_unit is not None:
        us = float(value) * UNITS_US[number_unit]
    else:
        match = _PATTERN.match(value) if isinstance(value, str) else None
        if match is None:
            if isinstance(value, str) and number_unit is not None:
                try:
                    return parse_duration_us(float(value), number_unit=number_unit,
                                             allow_zero=allow_zero)
                except ValueError:
                    pass
            unit_hint = f" (or a number of {_unit_name(number_unit)})" if number_unit else ""
            raise ValueError(f"{EXPECTED}{unit_hint}, found {value!r}")
        us = float(match.group(1)) * UNITS_US[match.group(2)]
    if us != us or us < 0 or (us == 0 and not allow_zero):  # NaN, negative, zero
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"a duration must be {bound}, found {value!r}")
    return round(us)


def duration_seconds(value: str | int | float, *, number_unit: str | None = "s",
                     allow_zero: bool = False) -> float:
    """A duration in seconds (bare numbers are seconds unless told otherwise)."""
    return parse_duration_us(value, number_unit=number_unit, allow_zero=allow_zero) / 1e6


def _unit_name(unit: str) -> str:
    return {"us": "microseconds", "ms": "milliseconds", "s": "seconds", "m": "minutes",
            "h": "hours", "d": "days"}[unit]


def _check_duration(value: Any) -> Any:
    parse_duration_us(value)
    return value.strip()


def _check_lateness(value: Any) -> Any:
    parse_duration_us(value, number_unit="s", allow_zero=True)
    return value.strip() if isinstance(value, str) else value


def _to_seconds(value: Any) -> Any:
    if value is None:
        return None
    return duration_seconds(value)


def _to_seconds_or_zero(value: Any) -> Any:
    return duration_seconds(value, allow_zero=True)


Duration = Annotated[str, BeforeValidator(_check_duration)]
"""A duration > 0 kept as written ('30s'), for specs that print it back."""

Lateness = Annotated[str | float, BeforeValidator(_check_lateness)]
"""A duration >= 0, or a number of seconds."""

Seconds = Annotated[float, BeforeValidator(_to_seconds)]
"""For ``..._s`` fields: a number of seconds or a duration ('90s', '2m'), stored in seconds
(> 0)."""

SecondsOrZero = Annotated[float, BeforeValidator(_to_seconds_or_zero)]
"""Like :data:`Seconds`, but 0 is allowed (e.g. "do not wait")."""
