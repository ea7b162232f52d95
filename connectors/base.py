"""What every source and sink provides, and how they register by name.

A connector's YAML block is validated by its own pydantic config model (``extra="forbid"``),
registered with it: ``@source("parquet", config=ParquetSourceConfig)``. Connectors never import
kernels; they move Arrow record batches in the canonical tick schema and nothing else. The
contract and the registry live in the engine (engine/contract.py, engine/connector_registry.py);
this module gathers what a connector needs in one import.
"""

from __future__ import annotations

from tickflow.engine.connector_registry import (  # noqa: F401  (re-exported)
    ConnectorDef,
    connector_names,
    get_connector,
    sink,
    source,
)
from tickflow.engine.contract import (  # noqa: F401  (re-exported: connectors import them here)
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Sink,
    Source,
)
