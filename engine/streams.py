"""Streams: the named flows of rows a job is made of (the compile-time plan).

Every source is a stream named by its ``id`` (or ``<kind><index>`` without one). An operator
step (``operator: resample_ohlc``, ``asof_join``, ``filter``, ...) reads one stream, two for
``asof_join``, and creates a new stream named by its step id. A kernel step adds columns to
the stream it reads, keeping its rows.

Which stream a step reads: its ``from:``, else the *current* stream, which is the first source
until an operator step makes its own stream the current one. So a plain list of steps reads
like a pipeline (ticks -> filter -> kernels on the filtered rows), and ``from:`` branches off
any stream defined above. A stream is its origin followed by every kernel step that reads it
(ordered by their column dependencies), so an operator or sink reading a stream sees all of
its columns. The *main* stream is the current stream after the last step: ``signals:`` are
computed on it and sinks without ``from:`` write it.

The executor (``engine/executors/streams.py``) runs one :class:`~engine.executors.local.
Pipeline` per stream that has kernel steps, with keyed state sharded over worker lanes exactly
as in a single-stream job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tickflow.engine.operators.base import BoundOperator


@dataclass
class Stream:
    """One stream of the plan: where its rows come from and the kernel steps on it."""

    name: str
    origin: Any  # a ConnectorUse (source) or a BoundOperator
    key: str
    base_columns: list[str] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)  # BoundKernel, in execution order
    signals: dict[str, Any] = field(default_factory=dict)  # name -> Rule (main stream only)
    columns: list[str] = field(default_factory=list)  # after steps and signals
    known: bool = True  # False when the origin's schema could not be read

    @property
    def operator(self) -> BoundOperator | None:
        return self.origin if isinstance(self.origin, BoundOperator) else None

    @property
    def is_source(self) -> bool:
        return not isinstance(self.origin, BoundOperator)


def stream_names_hint(streams: dict[str, Stream], where: str = " defined above") -> str:
    """A tail listing the streams a name could have been: " (streams defined above: a, b)"."""
    names = list(streams)
    return f" (streams{where}: {', '.join(names)})" if names else ""
