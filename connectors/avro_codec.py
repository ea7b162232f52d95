"""Avro in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the
Avro body; the schema itself lives in a Schema Registry.

Encoding goes through confluent-kafka's ``AvroSerializer`` (fastavro underneath), so
tickflow's messages are what any Confluent client reads and writes. Decoding does what its
``AvroDeserializer`` does for these topics (no data-contract rules): the writer schema is
fetched by the message's id through the registry client (which caches it) and fastavro
reads the body against it and the reader schema. The deserializer itself re-walked the
schema's tags and rules for every message, 34 us a tick against about 5 (a test checks both
give the same records); a batch of clean ticks without a reader schema is read in one
compiled pass instead (avro_fast.py, under 1 µs a tick). A message that is not Avro of a known
schema is rejected with a reason (the source sends it to the dead letters); a registry that
cannot be reached is an error of the run.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.connectors.avro_fast import Plan, decode_batch, plan_for
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.connectors.schema_registry import avro_schema_for, registry_client, tick_schema_str
from tickflow.engine.errors import SinkError, SourceError

Rejected = list[tuple[int, str]]
MAGIC_BYTE = 0


def _parsed(schema_str: str) -> Any:
    from fastavro import parse_schema

    return parse_schema(json.loads(schema_str))


def _context(topic: str) -> Any:
    from confluent_kafka.serialization import MessageField, SerializationContext

    return SerializationContext(topic, MessageField.VALUE)


class AvroTickEncoder:
    """Ticks (dicts or Arrow batches) to Confluent-Avro values under ``TOPIC-value``.

    Args:
        registry_url: the Schema Registry.
        topic: the topic written (names the subject).
        schema: the writer schema (default: the repo's tick schema); registered on first use.
    """

    def __init__(self, registry_url: str, topic: str, schema: str | None = None):
        from confluent_kafka.schema_registry.avro import AvroSerializer

        self.registry_url = registry_url
        self._serialize = AvroSerializer(registry_client(registry_url),
                                         schema or tick_schema_str(),
                                         conf={"auto.register.schemas": True})
        self._ctx = _context(topic)

    def encode_dict(self, row: dict[str, Any]) -> bytes:
        try:
            return bytes(self._serialize(row, self._ctx))
        except (ValueError, TypeError) as exc:
            msg = f"avro: cannot encode {row!r}: {exc}"
            raise SinkError(msg) from None
        except Exception as exc:  # the registry's errors have no common narrow base
            msg = f"avro: schema registry {self.registry_url}: {exc}"
            raise SinkError(msg) from None

    def encode_rows(self, batch: pa.RecordBatch | pa.Table, key: str,
                    columns: list[str] | None = None) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` per row, in row order."""
        rows = (batch.select(columns) if columns else batch).to_pylist()
        keys = batch.column(key).to_pylist()
        return [(str(k or "").encode(), self.encode_dict(r))
                for k, r in zip(keys, rows, strict=True)]


def avro_row_encoder(registry_url: str, topic: str, schema: pa.Schema, key: str,
                     columns: list[str] | None) -> Callable[[pa.RecordBatch],
                                                            list[tuple[bytes, bytes]]]:
    """A sink's encoder: a record schema derived from the written columns' Arrow types."""
    chosen = pa.schema([schema.field(c) for c in columns]) if columns else schema
    try:
        avro = avro_schema_for(chosen, f"{topic}_value")
    except ValueError as exc:
        msg = f"kafka sink {topic}: format avro: {exc}"
        raise SinkError(msg) from None
    encoder = AvroTickEncoder(registry_url, topic, avro)
    return lambda batch: encoder.encode_rows(batch, key, columns)


class AvroTickDecoder:
    """Confluent-Avro values to canonical tick batches.

    Args:
        registry_url: the Schema Registry (writer schemas are fetched by the id in each
            message, and cached).
        reader_schema: decode into this schema (schema evolution: a newer tick schema reads
            older messages); default: each message's writer schema.
    """

    def __init__(self, registry_url: str, reader_schema: str | None = None,
                 topic: str = "ticks"):
        self.registry_url = registry_url
        self._registry = registry_client(registry_url)
        self._reader = _parsed(reader_schema) if reader_schema else None
        self._writers: dict[int, Any] = {}
        self._plans: dict[int, Plan | None] = {}
        self.topic = topic

    def _writer(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` (KeyError: the registry does not know it)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        writer = self._writers.get(schema_id)
        if writer is not None:
            return writer
        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise KeyError(schema_id) from None
            msg = f"avro: schema registry {self.registry_url}: {exc}"
            raise SourceError(msg) from None
        except Exception as exc:  # connection errors: the run's problem, not the message's
            msg = f"avro: schema registry {self.registry_url}: {exc}"
            raise SourceError(msg) from None
        writer = self._writers[schema_id] = _parsed(schema.schema_str)
        self._plans[schema_id] = plan_for(json.loads(schema.schema_str))
        return writer

    def _plan(self, schema_id: int) -> Plan | None:
        """The fast path's plan of a writer schema (KeyError: the registry does not know it)."""
        if schema_id not in self._plans:
            self._writer(schema_id)
        return self._plans[schema_id]

    def decode_one(self, value: bytes) -> tuple[dict[str, Any] | None, str]:
        """One message: the record, or None and the reason it is unusable."""
        from fastavro import schemaless_reader
        from fastavro.read import SchemaResolutionError

        if len(value) < 5 or value[0] != MAGIC_BYTE:
            return None, "not_confluent_avro"
        try:
            writer = self._writer(int.from_bytes(value[1:5], "big"))
        except KeyError:
            return None, "unknown_schema_id"
        if len(value) == 5:
            return None, "malformed_avro"
        try:
            record = schemaless_reader(io.BytesIO(value[5:]), writer, self._reader)
        except SchemaResolutionError as exc:
            msg = f"avro: the reader schema cannot read topic {self.topic}'s writer schema: {exc}"
            raise SourceError(msg) from None
        except (EOFError, ValueError, TypeError, IndexError, OverflowError, struct.error,
                UnicodeDecodeError):  # OverflowError: a timestamp past year 9999
            return None, "malformed_avro"
        if not isinstance(record, dict) or record.get("timestamp") is None or \
                not record.get("symbol"):
            return None, "missing_timestamp_or_symbol"
        return record, ""

    def decode(self, values: list[bytes]) -> tuple[pa.RecordBatch, Rejected, np.ndarray]:
        """Values to ``(ticks, rejected (index, reason), index of each tick's value)``: a batch
        of clean ticks of one flat writer schema in one compiled pass (avro_fast.py), anything
        else (or a reader schema) record by record through fastavro."""
        if self._reader is None:
            fast = decode_batch(values, self._plan)
            if fast is not None:
                return fast, [], np.arange(len(values), dtype=np.int64)
        rows: list[dict[str, Any]] = []
        origin: list[int] = []
        rejected: Rejected = []
        for i, value in enumerate(values):
            record, reason = self.decode_one(value)
            if record is None:
                rejected.append((i, reason))
            else:
                rows.append(record)
                origin.append(i)
        # column by column: a third of the cost of RecordBatch.from_pylist over the rows
        batch = pa.RecordBatch.from_arrays(
            [pa.array([r.get(f.name) for r in rows], type=f.type)
             for f in CANONICAL_TICK_SCHEMA], schema=CANONICAL_TICK_SCHEMA)
        return batch, rejected, np.asarray(origin, dtype=np.int64)
