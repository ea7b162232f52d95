"""Ticks handed in from Python, as a Parquet file the job's source can read.

A job's source is read through its connector (schema at compile time, batches at run time,
positions for checkpoints), so tables, DataFrames and batch iterators are spooled batch by batch
to a temporary Parquet file rather than given a second code path into the engine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.engine.errors import SourceError

Ticks = Any  # str | os.PathLike | pa.Table | pandas/polars DataFrame | Iterable[pa.RecordBatch]


def _as_table(ticks: Any) -> pa.Table | None:
    if isinstance(ticks, pa.Table):
        return ticks
    if isinstance(ticks, pa.RecordBatch):
        return pa.Table.from_batches([ticks])
    module = type(ticks).__module__.split(".")[0]
    if module == "pandas" and hasattr(ticks, "columns"):
        return pa.Table.from_pandas(ticks, preserve_index=False)
    if module == "polars" and hasattr(ticks, "to_arrow"):
        return ticks.to_arrow()
    return None


def _batches(ticks: Any) -> Iterator[pa.RecordBatch]:
    for i, item in enumerate(ticks):
        if isinstance(item, pa.Table):
            yield from item.to_batches()
        elif isinstance(item, pa.RecordBatch):
            yield item
        else:
            raise SourceError(f"ticks: item {i} of the iterator is a {type(item).__name__}; "
                              f"expected pyarrow RecordBatch or Table")


@contextmanager
def ticks_file(ticks: Ticks) -> Iterator[str | None]:
    """A Parquet path holding ``ticks`` for the duration of the block (None: the job's own)."""
    if ticks is None:
        yield None
        return
    if isinstance(ticks, str | os.PathLike):
        path = os.path.expanduser(os.fspath(ticks))
        if not os.path.exists(path) and not any(c in path for c in "*?["):
            raise SourceError(f"ticks: no such file or directory: {os.fspath(ticks)!r}")
        yield path
        return
    table = _as_table(ticks)
    if table is None and not isinstance(ticks, Iterable):
        raise SourceError(f"ticks: expected a Parquet path, a pyarrow Table, a pandas or polars "
                          f"DataFrame, or an iterator of RecordBatches; found "
                          f"{type(ticks).__name__}")
    with tempfile.TemporaryDirectory(prefix="tickflow-ticks-") as tmp:
        path = str(Path(tmp) / "ticks.parquet")
        if table is not None:
            pq.write_table(table, path)
        else:
            _spool(_batches(ticks), path)
        yield path


def _spool(batches: Iterator[pa.RecordBatch], path: str) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema)
            elif batch.schema != writer.schema:
                raise SourceError(f"ticks: a batch's schema differs from the first one's: "
                                  f"{batch.schema} vs {writer.schema}")
            writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise SourceError("ticks: the iterator yielded no batches (the schema is unknown)")
