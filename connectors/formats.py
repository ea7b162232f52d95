"""Which codec a Kafka topic uses: ``format: json | avro | arrow``.

- ``json``: one canonical JSON object per message (``tick_codec``); readable by anything.
- ``avro``: Confluent wire format with a Schema Registry (``avro_codec``); for other tools
  that speak Avro, with schema evolution checked by the registry.
- ``arrow``: Arrow IPC, many rows per message (``arrow_codec``); tickflow to tickflow.

Both directions share one shape: an encoder takes a batch and returns ``(key, value)``
pairs; a decoder takes values and returns ``(ticks, rejected, origin)``, where ``origin``
is the index of the value each tick came from (several ticks per value with Arrow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tickflow.connectors.tick_codec import (
    decode_tick_values,
    encode_json_bytes,
    kept_indices,
    key_bytes,
)

Format = Literal["json", "avro", "arrow"]
Rejected = list[tuple[int, str]]
Decoder = Callable[[list[bytes]], tuple[pa.RecordBatch, Rejected, np.ndarray]]
Encoder = Callable[[pa.RecordBatch], list[tuple[bytes, bytes]]]


def check_format(config: Any) -> Any:
    """A Kafka config's rule: ``format: avro`` needs ``schema_registry``."""
    if config.format == "avro" and not config.schema_registry:
        msg = ("format avro needs schema_registry: the Schema Registry URL, e.g. "
               "http://localhost:8081 (docker compose up -d schema-registry)")
        raise ValueError(msg)
    if config.format != "avro" and config.schema_registry:
        msg = f"schema_registry is used by format avro only (format is {config.format})"
        raise ValueError(msg)
    return config


def _json_decode(values: list[bytes]) -> tuple[pa.RecordBatch, Rejected, np.ndarray]:
    ticks, rejected = decode_tick_values(values)
    return ticks, rejected, kept_indices(len(values), rejected)


def tick_decoder(fmt: Format, topic: str, registry_url: str | None = None) -> Decoder:
    """The decoder of a tick topic in ``fmt``."""
    if fmt == "avro":
        from tickflow.connectors.avro_codec import AvroTickDecoder

        assert registry_url is not None  # the configs require it
        return AvroTickDecoder(registry_url, topic=topic).decode
    if fmt == "arrow":
        from tickflow.connectors.arrow_codec import decode_arrow_ticks

        return decode_arrow_ticks
    return _json_decode


def row_encoder(fmt: Format, topic: str, schema: pa.Schema, key: str,
                columns: list[str] | None, registry_url: str | None = None) -> Encoder:
    """The encoder of a sink writing rows of ``schema`` (``columns`` of them) in ``fmt``."""
    if fmt == "avro":
        from tickflow.connectors.avro_codec import avro_row_encoder

        assert registry_url is not None
        return avro_row_encoder(registry_url, topic, schema, key, columns)
    if fmt == "arrow":
        from tickflow.connectors.arrow_codec import encode_arrow_messages

        return lambda batch: encode_arrow_messages(batch, key, columns)

    def encode_json(batch: pa.RecordBatch) -> list[tuple[bytes, bytes]]:
        values = encode_json_bytes(batch, columns)
        return list(zip(key_bytes(batch.column(key), "None"), values, strict=True))

    return encode_json
