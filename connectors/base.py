"""What every source and sink provides, and how they register by name.

A connector's YAML block is validated by its own pydantic config model (``extra="forbid"``),
registered with it: ``@source("parquet", config=ParquetSourceConfig)``. Connectors never import
kernels; they move Arrow record batches in the canonical tick schema and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from tickflow.engine.registry import CONNECTORS

CANONICAL_TICK_SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("symbol", pa.string()),
    ("exchange", pa.string()),
    ("price", pa.float64()),
    ("best_bid", pa.float64()),
    ("best_ask", pa.float64()),
    ("best_bid_size", pa.float64()),
    ("best_ask_size", pa.float64()),
    ("last_size", pa.float64()),
    ("volume_24h", pa.float64()),
    ("sequence", pa.int64()),
])


class ConnectorConfig(BaseModel):
    """Base of every connector's YAML block: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    id: str | None = None


@dataclass
class RunContext:
    """What a connector may know about the run: the job's identity and provenance."""

    job_name: str
    job_path: str = ""
    job_yaml: str = ""
    job_sha256: str = ""
    tickflow_version: str = ""
    git_commit: str | None = None
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, str]:
        """Key/value metadata that outputs carry so a file says which job made it."""
        meta = {"tickflow.job_name": self.job_name, "tickflow.job_path": self.job_path,
                "tickflow.job_yaml": self.job_yaml, "tickflow.job_sha256": self.job_sha256,
                "tickflow.version": self.tickflow_version}
        if self.git_commit:
            meta["tickflow.git_commit"] = self.git_commit
        return meta


class Source:
    """A stream of record batches. ``schema`` must be known before the first batch (compile).

    Resumable sources (checkpointed jobs) also provide two methods:

    - ``position() -> dict``: called right after ``batches()`` yielded a batch, it names the
      point just after that batch as a JSON-able dict that only the source interprets (Parquet:
      ``{"file", "path", "row"}``; Kafka: offsets per partition). It is recorded in the
      checkpoint together with the state that covers every row before it.
    - ``seek(position: dict) -> None``: called before ``batches()`` on a restart, with a value
      ``position()`` returned; the next batch starts exactly there. A source that can no longer
      find the position (files changed, offsets expired) raises ``SourceError``.

    A source without them cannot resume: a restart then needs ``--reset-state``.
    """

    def __init__(self, config: ConnectorConfig, context: RunContext):
        self.config = config
        self.context = context

    def schema(self) -> pa.Schema:
        raise NotImplementedError

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def close(self) -> None:
        return None


class Sink:
    """Receives the job's output batches in input order; ``close`` returns a short summary.

    Sinks of checkpointed jobs may provide ``seek(position | None)`` (before ``open``: drop
    output past a checkpoint's position, or all of it when None), ``checkpoint() -> dict``
    (make everything written so far durable and return its position) and ``release()`` (after
    the final checkpoint: remove recovery leftovers). With them a resumed run writes each row
    exactly once; a sink without them sees only the rows after a resume.
    """

    def __init__(self, config: ConnectorConfig, context: RunContext):
        self.config = config
        self.context = context

    def open(self, schema: pa.Schema) -> None:
        return None

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> str | None:
        return None

    def required_columns(self) -> list[str]:
        """Columns this sink reads; the compiler checks that they exist."""
        return []


@dataclass(frozen=True)
class ConnectorDef:
    name: str
    role: str  # "source" | "sink"
    cls: type
    config: type[ConnectorConfig]
    summary: str


def _register(role: str, name: str, config: type[ConnectorConfig],
              summary: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        CONNECTORS.add(f"{role}:{name}", ConnectorDef(name, role, cls, config, summary),
                       summary=summary)
        return cls

    return deco


def source(name: str, *, config: type[ConnectorConfig],
           summary: str = "") -> Callable[[type], type]:
    """Register a Source class under ``kind: name`` in a job's ``sources``."""
    return _register("source", name, config, summary)


def sink(name: str, *, config: type[ConnectorConfig],
         summary: str = "") -> Callable[[type], type]:
    """Register a Sink class under ``kind: name`` in a job's ``sinks``."""
    return _register("sink", name, config, summary)


def connector_names(role: str) -> list[str]:
    prefix = f"{role}:"
    return [n[len(prefix):] for n in CONNECTORS.names() if n.startswith(prefix)]


def get_connector(role: str, name: str) -> ConnectorDef:
    from tickflow.engine.registry import UnknownNameError, close_matches

    key = f"{role}:{name}"
    if key not in CONNECTORS:
        raise UnknownNameError(f"{role} kind", name, close_matches(name, connector_names(role)))
    return CONNECTORS.get(key)
