"""Schema Registry glue for the Avro format: the repo's schemas, a client, Arrow -> Avro.

The tick schema lives in the repository (``connectors/schemas/tick.avsc``, shipped as package
data) so that a topic's format is reviewed like code; serializers register it under the
Confluent default subject ``TOPIC-value`` and the registry's compatibility rule (BACKWARD by
default) decides whether a changed schema may be used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMAS = Path(__file__).resolve().parent / "schemas"
TICK_SCHEMA_FILE = SCHEMAS / "tick.avsc"


def tick_schema_str() -> str:
    """The canonical tick's Avro schema, as registered."""
    return TICK_SCHEMA_FILE.read_text(encoding="utf-8")


def registry_client(url: str) -> Any:
    """A confluent-kafka ``SchemaRegistryClient`` for ``url`` (it caches ids and schemas)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": url})


def _avro_type(field: pa.Field) -> Any:
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_timestamp(t):
        base: Any = {"type": "long", "logicalType": "timestamp-micros"}
    elif pa.types.is_boolean(t):
        base = "boolean"
    elif pa.types.is_integer(t):
        base = "long"
    elif pa.types.is_floating(t):
        base = "double"
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        base = "string"
    else:
        msg = f"column {field.name!r}: type {t} has no Avro mapping (number, bool, text, time)"
        raise ValueError(msg)
    return ["null", base]


def avro_schema_for(schema: pa.Schema, name: str) -> str:
    """A record schema for rows of ``schema``: every field nullable with a null default,
    so adding a column later stays BACKWARD compatible."""
    record = "".join(c if c.isalnum() else "_" for c in name) or "Row"
    fields = [{"name": f.name, "type": _avro_type(f), "default": None} for f in schema]
    return json.dumps({"type": "record", "name": record, "namespace": "tickflow",
                       "fields": fields})
