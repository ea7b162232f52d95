"""What compiling a job produces: its connectors, its stream graph and its signals.

Kept apart from the compiler so that runners, executors and tools can name the result without
importing the compiler's checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from tickflow.engine.connector_registry import ConnectorDef
from tickflow.engine.contract import ConnectorConfig, RunContext
from tickflow.engine.loader import LoadedJob
from tickflow.engine.operators import BoundOperator
from tickflow.engine.rules import Rule
from tickflow.engine.spec import JobSpec
from tickflow.engine.step import BoundKernel
from tickflow.engine.streams import Stream


@dataclass
class ConnectorUse:
    """A source or sink of the job: its registry entry and validated config."""

    index: int
    definition: ConnectorDef
    config: ConnectorConfig

    @property
    def label(self) -> str:
        return self.config.id or f"{self.definition.name}{self.index}"


@dataclass
class CompiledJob:
    spec: JobSpec
    loaded: LoadedJob
    context: RunContext
    sources: list[ConnectorUse]
    source_schema: pa.Schema
    steps: list[BoundKernel]
    signals: dict[str, Rule]
    sinks: list[ConnectorUse]
    key: str
    producers: dict[str, str] = field(default_factory=dict)
    # the stream plan (engine/streams.py): every stream by name, in creation order
    streams: dict[str, Stream] = field(default_factory=dict)
    main_stream: str = ""
    sink_streams: list[str] = field(default_factory=list)  # the stream each sink writes
    # located one-line notes for `run-job validate` (a source validated by its declared schema)
    notes: list[str] = field(default_factory=list)

    @property
    def is_multi_stream(self) -> bool:
        """More than one stream (several sources or operator steps): run by the stream graph."""
        return len(self.streams) > 1

    @property
    def operators(self) -> list[BoundOperator]:
        return [s.operator for s in self.streams.values() if s.operator is not None]

    @property
    def output_columns(self) -> list[str]:
        if self.is_multi_stream:
            return list(self.streams[self.main_stream].columns)
        cols = list(self.source_schema.names)
        for s in self.steps:
            cols.extend(s.output_columns)
        cols.extend(self.signals)
        return cols
