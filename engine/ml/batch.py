"""Batch steps: steps that are not numba kernels and run on a whole batch at once.

A numba kernel walks rows with per-key state; a model scorer (``model_score``) is a pure
function of each row's columns that wants many rows per call (a scikit-learn or ONNX model is
fast per batch, slow per row). So a batch step declares itself in the same ``KERNELS`` registry
(it is named in YAML, validated, listed by ``run-job kernels`` and in the reference like any
kernel) with ``kind == "batch"``, and the executor runs it after the numba steps, on the main
thread, over every row of the batch in input order. It keeps no keyed state, so its output
cannot depend on how the stream is cut into batches (a step that needs state is a kernel).

Binding happens at compile time and may do real work (load and check a model file); a problem
found then is a :class:`BatchBindError` naming the parameter, which the compiler reports at that
parameter's line.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tickflow.engine.errors import KernelRuntimeError, TickflowError
from tickflow.engine.registry import KERNELS

BatchFn = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Input columns (float64, one per input, all of the batch's rows) -> output columns."""


class BatchBindError(ValueError):
    """A batch step cannot be bound; ``param`` names the parameter to point at."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class BindContext:
    """What a batch step may need from the job when it binds: the safety settings."""

    model_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchKernelDef:
    """A batch step's declaration: the fields ``run-job kernels`` and the compiler read.

    ``input_names(params)`` gives the input columns (they may come from the params, as a
    model's feature list does); ``make(params, inputs, context)`` returns the function run on
    each batch, and may raise :class:`BatchBindError`.
    """

    name: str
    params: type[Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_names: Callable[[Any], list[str]]
    make: Callable[[Any, tuple[str, ...], BindContext], BatchFn]
    output_dtypes: tuple[Any, ...]
    formula: str
    family: str
    doc: str = ""
    time_window: bool = False
    optional_inputs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "batch"

    def output_names(self, params: Any, input_columns: Sequence[str]) -> list[str]:
        """Default output names with ``{input}`` and parameter placeholders filled in."""
        values: dict[str, Any] = dict(params.model_dump())
        values["input"] = input_columns[0] if input_columns else ""
        names = []
        for template in self.outputs:
            keys = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            names.append(template.format(**{k: values.get(k, "") for k in keys}))
        return names

    def bind(self, step_id: str, params: Any, input_columns: tuple[str, ...],
             output_columns: tuple[str, ...], context: BindContext) -> BoundBatchStep:
        fn = self.make(params, input_columns, context)
        # the bound copy lists the actual columns as its inputs (for messages and the graph)
        concrete = dataclasses.replace(self, inputs=tuple(self.input_names(params)))
        return BoundBatchStep(step_id, concrete, params, input_columns, output_columns, fn)


@dataclass
class BoundBatchStep:
    """A compiled batch step; ``run_batch`` appends its outputs to what the batch has."""

    step_id: str
    definition: BatchKernelDef
    params: Any
    input_columns: tuple[str, ...]
    output_columns: tuple[str, ...]
    fn: BatchFn

    has_kernel_state: ClassVar[bool] = False  # whole batches in, no state carried forward
    is_cross_key: ClassVar[bool] = False

    def run_batch(self, produced: dict[str, np.ndarray],
                  columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run over every row of one batch; ``produced`` holds earlier steps' outputs."""
        inputs = [produced[c] if c in produced else columns[c] for c in self.input_columns]
        try:
            outs = self.fn(inputs)
        except TickflowError:
            raise
        except Exception as exc:  # a model failure must still name its step
            raise KernelRuntimeError(f"step '{self.step_id}' ({self.definition.name}) failed "
                                     f"on a batch of {len(inputs[0]) if inputs else 0} rows: "
                                     f"{type(exc).__name__}: {exc}") from exc
        return dict(zip(self.output_columns, outs, strict=True))


def batch_kernel(name: str, *, params: type[Any], inputs: Sequence[str],
                 outputs: Sequence[str], input_names: Callable[[Any], list[str]],
                 output_dtypes: Sequence[Any] | None = None, formula: str = "",
                 family: str = "ml") -> Callable[[Callable[..., BatchFn]], Callable[..., BatchFn]]:
    """Register a batch step under ``name``; the decorated function is its ``make``."""

    def deco(make: Callable[..., BatchFn]) -> Callable[..., BatchFn]:
        KERNELS.add(name, BatchKernelDef(
            name=name, params=params, inputs=tuple(inputs), outputs=tuple(outputs),
            input_names=input_names, make=make,
            output_dtypes=tuple(output_dtypes or [np.float64] * len(outputs)),
            formula=formula, family=family, doc=(make.__doc__ or "").strip()),
            summary=formula)
        return make

    return deco


def batch_steps(steps: Sequence[Any]) -> list[BoundBatchStep]:
    """The batch steps of a compiled job, in job order."""
    return [s for s in steps if isinstance(s, BoundBatchStep)]


def kernel_steps(steps: Sequence[Any]) -> list[Any]:
    """The numba steps of a compiled job (what the executor's lanes run)."""
    return [s for s in steps if not isinstance(s, BoundBatchStep)]
