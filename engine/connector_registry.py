"""Connectors register by name: ``@source("parquet", config=ParquetSourceConfig)``.

The registry entries (:class:`ConnectorDef`) belong to the engine, so the compiler can look a
``kind:`` up without importing any connector; the built-ins are imported lazily, on first use
(engine/builtin_connectors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickflow.engine.contract import ConnectorConfig
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
