"""What every source and sink provides, and how they register by name.

A connector's YAML block is validated by its own pydantic config model (``extra="forbid"``),
registered with it: ``@source("parquet", config=ParquetSourceConfig)``. Connectors never import
kernels; they move Arrow record batches in the canonical tick schema and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickflow.engine.contract import (  # noqa: F401  (re-exported: connectors import them here)
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Sink,
    Source,
)
from tickflow.engine.registry import CONNECTORS


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
