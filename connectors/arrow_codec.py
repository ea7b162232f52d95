"""Arrow IPC batches as Kafka messages, for topics that tickflow writes and tickflow reads.

One message holds many rows (one Arrow IPC stream: schema + one record batch) of one key,
so the topic keeps per-key order by partition and a consumer decodes a whole message with
no per-row work. Not for other tools: JSON and Avro are the interchange formats.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA

Rejected = list[tuple[int, str]]
MAX_ROWS_PER_MESSAGE = 5_000  # ~0.5 MB of ticks: under Kafka's default message size


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def encode_arrow_messages(batch: pa.RecordBatch | pa.Table, key: str,
                          columns: list[str] | None = None,
                          max_rows: int = MAX_ROWS_PER_MESSAGE) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` messages: the rows of each key, in order, ``max_rows`` at most each."""
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else \
            pa.RecordBatch.from_pylist([], schema=batch.schema)
    if batch.num_rows == 0:
        return []
    keys = batch.column(key)
    encoded = keys if pa.types.is_dictionary(keys.type) else pc.dictionary_encode(keys)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    names = encoded.dictionary.to_pylist()
    body = batch.select(columns) if columns else batch
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out: list[tuple[bytes, bytes]] = []
    for rows in np.split(order, bounds):
        k = str(names[int(codes[rows[0]])] or "").encode()
        for start in range(0, rows.size, max_rows):
            out.append((k, _ipc(body.take(pa.array(rows[start:start + max_rows])))))
    return out


def _canonical(table: pa.Table) -> pa.Table:
    """The canonical tick columns (missing ones null); raises on an uncastable type."""
    columns = []
    for f in CANONICAL_TICK_SCHEMA:
        if f.name in table.schema.names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=CANONICAL_TICK_SCHEMA)


def decode_arrow_ticks(values: list[bytes]) -> tuple[pa.RecordBatch, Rejected, np.ndarray]:
    """Values to ``(ticks, rejected (index, reason), index of each tick's value)``.

    A message is rejected whole: ``malformed_arrow`` (not an IPC stream), ``bad_columns``
    (a canonical column of another type) or ``missing_timestamp_or_symbol`` (a null in
    either: a tick must say when and what).
    """
    tables: list[pa.Table] = []
    origin: list[np.ndarray] = []
    rejected: Rejected = []
    for i, value in enumerate(values):
        try:
            table = pa.ipc.open_stream(value).read_all()
        except (pa.ArrowInvalid, OSError):
            rejected.append((i, "malformed_arrow"))
            continue
        try:
            table = _canonical(table)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            rejected.append((i, "bad_columns"))
            continue
        if table.column("timestamp").null_count or table.column("symbol").null_count:
            rejected.append((i, "missing_timestamp_or_symbol"))
            continue
        tables.append(table)
        origin.append(np.full(table.num_rows, i, dtype=np.int64))
    if not tables:
        empty = pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA)
        return empty, rejected, np.zeros(0, dtype=np.int64)
    merged = pa.concat_tables(tables).combine_chunks()
    batches = merged.to_batches()
    batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA)
    return batch, rejected, np.concatenate(origin)
