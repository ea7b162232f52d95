"""The kernel seam: how a kernel declares itself, once, for batch, streaming and Dask runs.

A kernel is one numba ``@njit(nogil=True)`` function that walks rows in arrival order and
updates per-key state held in arrays that the caller owns::

    fn(key, ts, *inputs, *state_fields, *outputs, *args) -> int

``key`` holds dense key ids (int64), ``ts`` the timestamps (int64 microseconds since the epoch),
``inputs`` float64 columns, ``state_fields`` arrays whose first axis is the key id, ``outputs``
preallocated arrays, and ``args`` the numeric parameters returned by the kernel's ``args``
function. It returns the number of rows it processed: fewer than ``len(key)`` only when a
growable ring buffer is full, in which case the caller doubles its capacity and calls again
from that row (time windows hold an unbounded number of rows).

Registration lives next to the math::

    @kernel("ewma", params=EwmaParams, inputs=("price",), outputs=("ewma",),
            state=lambda p: [Field("m")], args=lambda p: (p.resolved_alpha(),))
    @njit(nogil=True, cache=True)
    def ewma(key, ts, x, m, out, alpha): ...
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic import Field as PydanticField

from tickflow.engine.durations import Duration, parse_duration_us  # noqa: F401  (re-exported)
from tickflow.engine.registry import KERNELS

# --------------------------------------------------------------------------- parameters

def _check_window(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a row count (integer >= 1) or a duration like 5s, 500ms, 1m")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"expected a row count >= 1 or a duration like 5s, 500ms, 1m, "
                             f"found {value}")
        return value
    if isinstance(value, str):
        if value.strip().isdigit():
            return _check_window(int(value))
        parse_duration_us(value)
        return value.strip()
    raise ValueError(f"expected a row count (integer >= 1) or a duration like 5s, 500ms, 1m, "
                     f"found {type(value).__name__} {value!r}")


Window = Annotated[int | str, BeforeValidator(_check_window)]
"""A window: a row count (int >= 1) or a duration ('30s', '5m', '1h') over timestamps."""


def window_args(window: int | str) -> tuple[int, int]:
    """(rows, span_us): exactly one is non-zero. Row windows cap the count, time windows the age."""
    if isinstance(window, int):
        return window, 0
    return 0, parse_duration_us(window)


class Params(BaseModel):
    """Base of every kernel's params model: strict, frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


class AlphaParams(Params):
    """The EMA family: exactly one of alpha, span, half_life."""

    alpha: float | None = PydanticField(None,
                                        description="smoothing weight of the newest value, in (0, "
                                                    "1]; give one of alpha, span, half_life (none: "
                                                    "alpha 0.06)")
    span: float | None = PydanticField(None, description="span N >= 1, alpha = 2 / (N + 1)")
    half_life: float | None = PydanticField(None,
                                            description="half-life in rows, alpha = 1 - 2^(-1 / "
                                                        "half_life)")

    @model_validator(mode="after")
    def _exactly_one(self) -> AlphaParams:
        given = [n for n in ("alpha", "span", "half_life") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give exactly one of alpha, span, half_life; found {', '.join(given)}")
        if self.alpha is not None and not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must satisfy 0 < alpha <= 1, found {self.alpha}")
        if self.span is not None and self.span < 1:
            raise ValueError(f"span must be >= 1, found {self.span}")
        if self.half_life is not None and self.half_life <= 0:
            raise ValueError(f"half_life must be > 0, found {self.half_life}")
        return self

    def resolved_alpha(self, default_alpha: float | None = None,
                       default_span: float | None = None) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        if self.span is not None:
            return 2.0 / (self.span + 1.0)
        if self.half_life is not None:
            return 1.0 - 0.5 ** (1.0 / self.half_life)
        if default_alpha is not None:
            return default_alpha
        assert default_span is not None
        return 2.0 / (default_span + 1.0)


class WindowParams(Params):
    """A rolling window (rows or duration) with the time-window warm-up threshold."""

    window: Window = PydanticField(20,
                                   description="rows in the window, or a duration such as 30s for "
                                               "a time window")
    min_periods: int = PydanticField(2,
                                     description="valid values needed before an output is emitted "
                                                 "(NaN before)")

    @model_validator(mode="after")
    def _min_periods(self) -> WindowParams:
        if self.min_periods < 1:
            raise ValueError(f"min_periods must be >= 1, found {self.min_periods}")
        return self


# --------------------------------------------------------------------------- state layout

GrowKind = Literal["ring", "linear"]


@dataclass(frozen=True)
class Field:
    """One per-key state array: shape ``(n_keys, *shape)``.

    ``grow`` marks fields whose last axis is a buffer that may need to double for time
    windows: ``"ring"`` buffers are re-laid from their group's head, ``"linear"`` ones (sorted
    windows) are copied as they are. ``group`` names the ring whose ``{group}_head`` and
    ``{group}_count`` fields index it.

    ``per_row`` declares that at most one value per input row enters the buffer, so that it
    never holds more than ``{group}_count`` values, which the rows of a key bound: the engine
    then starts the buffer small and widens it (up to ``shape[-1]``) before a chunk could
    fill it, instead of giving every key the whole window (row windows only).

    ``stub`` marks a zero-wide argument the kernel never touches for these params (a row
    window's timestamps, see :func:`ring_fields`): it holds nothing and is not saved.
    """

    name: str
    shape: tuple[int, ...] = ()
    dtype: Any = np.float64
    fill: float | int = np.nan
    grow: GrowKind | None = None
    group: str = "ring"
    per_row: bool = False
    stub: bool = False


def ring_fields(capacity: int, values: Sequence[str] = ("vals",), group: str = "ring",
                with_ts: bool = True, per_row: bool = False,
                stub_ts: bool = False) -> list[Field]:
    """Fields of a ring buffer: one float64 buffer per name, timestamps, head and count.

    ``per_row``: see :class:`Field`; only for a row window whose kernel pushes at most one
    value per row. ``stub_ts``: a row window whose kernel reads and writes timestamps only for
    time windows (``if rows == 0``); its ``{group}_ts`` argument is a zero-wide stub.
    """
    out = [Field(v, (capacity,), np.float64, np.nan, "ring", group, per_row) for v in values]
    if stub_ts:
        out.append(Field(f"{group}_ts", (0,), np.int64, 0, stub=True))
    elif with_ts:
        out.append(Field(f"{group}_ts", (capacity,), np.int64, 0, "ring", group, per_row))
    out += [Field(f"{group}_head", (), np.int64, 0), Field(f"{group}_count", (), np.int64, 0)]
    return out


def moment_fields(prefix: str = "m") -> list[Field]:
    """Shifted running sums for a rolling mean/variance (see kernels.window)."""
    return [Field(f"{prefix}_shift", (), np.float64, 0.0),
            Field(f"{prefix}_s1", (), np.float64, 0.0),
            Field(f"{prefix}_s2", (), np.float64, 0.0),
            Field(f"{prefix}_since", (), np.int64, 0),
            Field(f"{prefix}_last", (), np.float64, np.nan),
            Field(f"{prefix}_run", (), np.int64, 0)]


def initial_capacity(window: int | str) -> int:
    """Row windows hold exactly ``window`` rows; time windows start small and double."""
    return window if isinstance(window, int) else 16


# --------------------------------------------------------------------------- registration


@dataclass(frozen=True)
class KernelDef:
    """Everything the engine needs to know about a kernel, declared beside its code."""

    name: str
    fn: Callable[..., int]
    params: type[Params]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    state: Callable[[Any], list[Field]]
    args: Callable[[Any], tuple[Any, ...]]
    output_dtypes: tuple[Any, ...]
    formula: str
    family: str
    optional_inputs: tuple[str, ...] = ()
    time_window: bool = False
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "kernel"

    def output_names(self, params: Params, input_columns: Sequence[str]) -> list[str]:
        """Default output names with ``{input}`` and parameter placeholders filled in."""
        values: dict[str, Any] = dict(params.model_dump())
        values["input"] = input_columns[0] if input_columns else ""
        names = []
        for template in self.outputs:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            names.append(template.format(**{f: values.get(f, "") for f in fields}))
        return names


def kernel(name: str, *, params: type[Params] = NoParams, inputs: Sequence[str],
           outputs: Sequence[str], state: Callable[[Any], list[Field]] | None = None,
           args: Callable[[Any], tuple[Any, ...]] | None = None,
           output_dtypes: Sequence[Any] | None = None, formula: str = "",
           optional_inputs: Sequence[str] = (), time_window: bool = False,
           family: str | None = None, extra: dict[str, Any] | None = None,
           ) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a numba kernel under ``name`` with its params model, columns and state.

    ``extra`` holds metadata for the engine, such as ``{"categories": {col: labels}}`` for an
    int8 output whose codes index ``labels``.
    """

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        py = getattr(fn, "py_func", fn)
        definition = KernelDef(
            name=name, fn=fn, params=params, inputs=tuple(inputs), outputs=tuple(outputs),
            state=state or (lambda p: []), args=args or (lambda p: ()),
            output_dtypes=tuple(output_dtypes or [np.float64] * len(outputs)),
            formula=formula, family=family or py.__module__.rsplit(".", 1)[-1],
            optional_inputs=tuple(optional_inputs), time_window=time_window,
            doc=(py.__doc__ or "").strip(), extra=dict(extra or {}))
        KERNELS.add(name, definition, summary=formula)
        return fn

    return deco
