"""The operator seam: steps that change the number of rows and create a new stream.

A kernel keeps one output row per input row; an operator does not (bars, joins, filters,
schedules), so it cannot run inside a morsel lane. Each operator step reads one or more named
streams (ports) and writes the stream named by its step id. The executor pushes batches in and
gets batches out::

    op = bound.make()
    op.bind({"in": schema})          # -> the output schema
    out = op.push("in", batch)       # 0..n output batches, as soon as rows are final
    out += op.end("in")              # end of input: flush what is still open

Streaming and batch runs are the same calls: a batch run is one ``push`` and ``end``. Any
split of the input into batches gives the same output rows (tested for every operator), and
``snapshot``/``restore`` carry the whole state (pickle-able) across a restart.

Registration lives beside the operator::

    @operator("filter", params=FilterParams, inputs=(), outputs=(), formula="...")
    class FilterOperator(Operator): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickflow.engine.columns import float_column
from tickflow.engine.errors import KernelRuntimeError
from tickflow.engine.registry import Registry
from tickflow.kernels.base import Params

OPERATORS: Registry[Any] = Registry("operator")


class OperatorSpecError(ValueError):
    """A compile-time problem with an operator step; ``where`` is the step key to point at."""

    def __init__(self, message: str, where: tuple[Any, ...] = ("params",)):
        self.where = where
        super().__init__(message)


@dataclass(frozen=True)
class OperatorDef:
    """Everything the engine needs to know about an operator, declared beside its code."""

    name: str
    cls: type[Operator]
    params: type[Params]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    formula: str
    family: str
    doc: str = ""
    time_window: bool = False

    @property
    def kind(self) -> str:
        return "operator"

    def output_names(self, params: Params, input_columns: Sequence[str]) -> list[str]:
        return list(self.outputs)


def operator(name: str, *, params: type[Params], inputs: Sequence[str] = (),
             outputs: Sequence[str] = (), formula: str = "",
             family: str | None = None) -> Callable[[type[Operator]], type[Operator]]:
    """Register an Operator class under ``name`` (``operator: name`` in a job's steps)."""

    def deco(cls: type[Operator]) -> type[Operator]:
        definition = OperatorDef(name=name, cls=cls, params=params, inputs=tuple(inputs),
                                 outputs=tuple(outputs), formula=formula,
                                 family=family or cls.__module__.rsplit(".", 1)[-1],
                                 doc=(cls.__doc__ or "").strip())
        OPERATORS.add(name, definition, summary=formula)
        return cls

    return deco


@dataclass
class BoundOperator:
    """One compiled operator step: params, columns, and the streams it reads.

    ``streams`` maps each port (``in``, or ``left``/``right``) to a stream name; ``key`` is
    the column the operator keys by; ``columns`` the stream's columns after this step.
    """

    step_id: str
    definition: OperatorDef
    params: Params
    input_columns: tuple[str, ...]
    output_columns: tuple[str, ...]
    streams: dict[str, str]
    key: str
    columns: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    has_kernel_state: ClassVar[bool] = False  # an operator keeps its own state (Operator)

    @property
    def ports(self) -> tuple[str, ...]:
        return self.definition.cls.ports

    def make(self) -> Operator:
        return self.definition.cls(self)


class Operator:
    """Base class: one instance per run holds the operator's whole state."""

    ports: ClassVar[tuple[str, ...]] = ("in",)

    def __init__(self, bound: BoundOperator):
        self.bound = bound
        self.params: Any = bound.params
        self.schema: pa.Schema | None = None

    @classmethod
    def check(cls, bound: BoundOperator, columns: dict[str, list[str]]) -> list[str]:
        """The output stream's column names; raise OperatorSpecError for a bad step."""
        raise NotImplementedError

    def bind(self, schemas: dict[str, pa.Schema]) -> pa.Schema:
        """Learn the input schemas before the first batch; returns the output schema."""
        raise NotImplementedError

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        raise NotImplementedError

    def end(self, port: str) -> list[pa.RecordBatch]:
        raise NotImplementedError

    def watermark(self) -> int | None:
        """A time (us) no future output row's ``timestamp`` will be earlier than, if known."""
        return None

    def advance(self, port: str, mark: int) -> list[pa.RecordBatch]:
        """The stream read on ``port`` promises no row earlier than ``mark`` from now on."""
        return []

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def fail(self, message: str) -> KernelRuntimeError:
        return KernelRuntimeError(f"step '{self.bound.step_id}' ({self.bound.definition.name}): "
                                  f"{message}")


def require_columns(bound: BoundOperator, columns: list[str], names: Sequence[str],
                    stream: str, where: tuple[Any, ...]) -> None:
    """OperatorSpecError naming the first of ``names`` that the stream lacks."""
    from tickflow.engine.registry import close_matches, did_you_mean

    for name in names:
        if name not in columns:
            hint = did_you_mean(close_matches(name, columns))
            raise OperatorSpecError(f"stream '{stream}' has no column {name!r}{hint} "
                                    f"(step '{bound.step_id}', operator "
                                    f"{bound.definition.name})", where)


def timestamps_us(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """A timestamp (or integer) column as int64 microseconds, and the index of its first
    null (-1 when none): operators refuse null times rather than guess them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    first_null = -1
    if column.null_count:
        first_null = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        column = pc.fill_null(column, 0)
    if pa.types.is_timestamp(column.type):
        if column.type.unit != "us":
            column = pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False)
        column = column.cast(pa.int64())
    elif not pa.types.is_integer(column.type):
        raise TypeError(f"expected a timestamp or integer column, found {column.type}")
    values = np.ascontiguousarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    return values, first_null


def floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as a writable float64 array with NaN for nulls (operators keep it)."""
    return np.array(float_column(column), dtype=np.float64, copy=True)


def check_order(op: Operator, ts: np.ndarray, last: int, stream: str, rows_before: int) -> None:
    """Operators that merge by time need each input in timestamp order (sources are)."""
    if ts.size == 0:
        return
    prev = np.concatenate([[last], ts[:-1]])
    bad = np.flatnonzero(ts < prev)
    if bad.size:
        i = int(bad[0])
        raise op.fail(f"stream '{stream}' is not in timestamp order: row {rows_before + i} "
                      f"is earlier than the row before it; sort the input by time")
