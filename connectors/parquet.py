"""``kind: parquet`` source (the sink lives in :mod:`tickflow.connectors.parquet_sink`).

The source streams a file, every Parquet file under a directory, or every file a glob matches,
batch by batch (``ParquetFile.iter_batches``), so memory stays bounded by a row group whatever
the size of the data. Timestamps in other units or without a time zone are cast to
``timestamp[us, UTC]`` (naive timestamps are taken to be UTC; nanoseconds are truncated).
Importing this module registers both the source and the sink.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Source,
    source,
)
from tickflow.connectors.parquet_parts import PartFiles
from tickflow.connectors.parquet_sink import Compression, ParquetSink, ParquetSinkConfig
from tickflow.connectors.parquet_writer import AtomicParquetWriter, read_provenance
from tickflow.engine.errors import SourceError

__all__ = ["AtomicParquetWriter", "Compression", "ParquetSink", "ParquetSinkConfig",
           "ParquetSource", "ParquetSourceConfig", "PartFiles", "declared_arrow_schema",
           "read_provenance", "resolve_parquet_paths"]

_TS_UTC = pa.timestamp("us", tz="UTC")
_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
ColumnType = Literal["timestamp", "string", "float64", "int64", "bool"]
_COLUMN_TYPES = {"timestamp": _TS_UTC, "string": pa.string(), "float64": pa.float64(),
                 "int64": pa.int64(), "bool": pa.bool_()}


# --------------------------------------------------------------------------- source

class ParquetSourceConfig(ConnectorConfig):
    """Ticks from Parquet files."""

    kind: Literal["parquet"] = "parquet"
    path: str = Field(min_length=1,
                      description="a Parquet file, a directory (every *.parquet file below it, "
                                  "in name order) or a glob such as data/2026-*/*.parquet")
    columns: list[str] | None = Field(
        None, min_length=1,
        description="read only these columns (default: all columns of the files)")
    declared_schema_: Literal["ticks"] | dict[str, ColumnType] = Field(
        "ticks", alias="schema",
        description="the columns the files will have, checked by `run-job validate` while "
                    "they do not exist yet: `ticks` (the canonical tick schema) or "
                    "{column: timestamp | string | float64 | int64 | bool}")


def declared_arrow_schema(declared: str | dict[str, str]) -> pa.Schema:
    """A ``schema:`` declaration as Arrow: ``ticks`` or a column -> type mapping."""
    if declared == "ticks":
        return CANONICAL_TICK_SCHEMA
    assert isinstance(declared, dict)
    return pa.schema([(name, _COLUMN_TYPES[kind]) for name, kind in declared.items()])


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def resolve_parquet_paths(path: str) -> list[Path]:
    """The files a source ``path`` stands for, in a stable order; SourceError when none."""
    expanded = os.path.expanduser(path)
    if _is_glob(expanded):
        files = sorted(Path(p) for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        what = "no file matches the glob"
    elif os.path.isdir(expanded):
        files = sorted(p for p in Path(expanded).rglob("*")
                       if p.is_file() and p.suffix.lower() in _PARQUET_SUFFIXES
                       and not any(part.startswith((".", "_"))
                                   for part in p.relative_to(expanded).parts))
        what = "no *.parquet file in the directory"
    elif os.path.isfile(expanded):
        files = [Path(expanded)]
        what = ""
    else:
        raise SourceError(f"parquet source: no such file or directory: {path!r}")
    if not files:
        raise SourceError(f"parquet source: {what} {path!r}")
    return files


def _normalise_field(f: pa.Field) -> pa.Field:
    if pa.types.is_timestamp(f.type) and f.type != _TS_UTC:
        return f.with_type(_TS_UTC)
    return f


def _read_schema(file: Path) -> pa.Schema:
    try:
        return pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"parquet source: cannot read {str(file)!r}: {exc}") from None


def _schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """The first column that differs: its type in the first file and in this one."""
    for f in first:
        if f.name not in other.names:
            return f"column {f.name!r} is missing (it is {f.type} in the first file)"
        theirs = other.field(f.name).type
        if theirs != f.type:
            return f"column {f.name!r} has type {theirs}; expected {f.type} as in the first file"
    extra = [n for n in other.names if n not in first.names]
    if extra:
        return f"column {extra[0]!r} is not in the first file"
    return "the columns are in a different order"


@source("parquet", config=ParquetSourceConfig,
        summary="read ticks from a Parquet file, directory or glob, streamed batch by batch")
class ParquetSource(Source):
    """Streams record batches from one or more Parquet files."""

    config: ParquetSourceConfig

    def __init__(self, config: ParquetSourceConfig, context: RunContext):
        super().__init__(config, context)
        self._files: list[Path] | None = None
        self._schema: pa.Schema | None = None
        self._position: dict[str, int | str] = {"file": 0, "path": "", "row": 0}
        self._start: tuple[int, int] = (0, 0)
        self._dictionary: list[str] = []

    def read_as_dictionary(self, columns: list[str]) -> None:
        """Yield these string columns dictionary-encoded, as Parquet stores them (no string
        copies; a key index maps each row group's dictionary once instead of hashing every
        row). The reader of the batches decodes them where plain strings are needed."""
        schema = self.schema()
        self._dictionary = [c for c in columns if c in schema.names
                            and schema.field(c).type == pa.string()]

    def files(self) -> list[Path]:
        if self._files is None:
            self._files = resolve_parquet_paths(self.config.path)
        return self._files

    def declared_schema(self) -> tuple[pa.Schema, str] | None:
        """The ``schema:`` declaration when no file exists yet (``run-job validate``), else None."""
        try:
            self.files()
            return None
        except SourceError:
            pass
        declared = declared_arrow_schema(self.config.declared_schema_)
        if self.config.columns is not None:
            declared = pa.schema([declared.field(c) for c in
                                  self._check_columns(self.config.columns, declared)])
        what = ("the canonical tick schema" if self.config.declared_schema_ == "ticks"
                else "its declared `schema:`")
        return declared, (f"{self.config.path!r} does not exist yet; validated against "
                          f"{what}")

    def schema(self) -> pa.Schema:
        """The (projected, normalised) schema, from the files' footers only."""
        if self._schema is None:
            files = self.files()
            full = pa.schema([_normalise_field(f) for f in _read_schema(files[0])])
            for other in files[1:]:
                theirs = pa.schema([_normalise_field(f) for f in _read_schema(other)])
                if not theirs.equals(full, check_metadata=False):
                    raise SourceError(
                        f"parquet source {self.config.path!r}: {str(other)!r} has a different "
                        f"schema from {str(files[0])!r}: {_schema_difference(full, theirs)}")
            if self.config.columns is not None:
                full = pa.schema([full.field(c) for c in
                                  self._check_columns(self.config.columns, full)])
            self._schema = full
        return self._schema

    def _check_columns(self, columns: list[str], schema: pa.Schema) -> list[str]:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise SourceError(f"parquet source {self.config.path!r} has no column(s) "
                              f"{', '.join(map(repr, unknown))} "
                              f"(its columns: {', '.join(schema.names)})")
        return list(columns)

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, found {batch_rows}")
        schema = self.schema()
        cols = self._check_columns(columns, schema) if columns is not None else schema.names
        target = pa.schema([schema.field(c) if c not in self._dictionary else
                            schema.field(c).with_type(pa.dictionary(pa.int32(), pa.string()))
                            for c in cols])
        return self._stream(self.files(), cols, target, batch_rows)

    def position(self) -> dict[str, int | str]:
        """Just after the last batch yielded: file index, its path and the row within it."""
        return dict(self._position)

    def seek(self, position: dict[str, int | str] | None) -> None:
        """Start the next ``batches()`` at a ``position()``; SourceError if the files changed."""
        if position is None:
            self._start = (0, 0)
            return
        try:
            index, row, path = int(position["file"]), int(position["row"]), str(position["path"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"parquet source {self.config.path!r}: not a parquet position: "
                              f"{position!r}") from None
        files = self.files()
        if path and (index >= len(files) or str(files[index]) != path):
            raise SourceError(f"parquet source {self.config.path!r}: the checkpoint stopped in "
                              f"{path!r} (file {index + 1}), which is no longer file "
                              f"{index + 1} of the source; the input changed")
        self._start = (index, row)

    def _stream(self, files: list[Path], cols: list[str], target: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        first_file, first_row = self._start
        for index, file in enumerate(files):
            if index < first_file:
                continue
            skip = first_row if index == first_file else 0
            row = 0
            self._position = {"file": index, "path": str(file), "row": 0}
            try:
                # pre_buffer=False: with it, pyarrow 26 keeps every row group read so far
                # cached until the file is done (memory grows with the file)
                pf = pq.ParquetFile(file, pre_buffer=False, buffer_size=READ_BUFFER_BYTES,
                                    read_dictionary=[c for c in self._dictionary if c in cols])
                groups = None
                if skip:  # start at the row group holding row ``skip``
                    meta = pf.metadata
                    g = 0
                    while g < meta.num_row_groups and row + meta.row_group(g).num_rows <= skip:
                        row += meta.row_group(g).num_rows
                        g += 1
                    groups = list(range(g, meta.num_row_groups))
                    if not groups:
                        continue
                it = pf.iter_batches(batch_size=batch_rows, columns=cols, row_groups=groups)
                while True:
                    try:
                        batch = next(it)
                    except StopIteration:
                        break
                    if row < skip:
                        cut = min(skip - row, batch.num_rows)
                        batch, row = batch.slice(cut), row + cut
                    row += batch.num_rows
                    if batch.num_rows:
                        self._position = {"file": index, "path": str(file), "row": row}
                        yield _conform(batch, target)
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(f"parquet source: cannot read {str(file)!r}: {exc}") from None


READ_BUFFER_BYTES = 256 * 1024
"""Bytes a column reader reads from the file at a time. Without it (pyarrow's 0) each column's
whole chunk of the row group is read into memory before its first page is decoded: Arrow's
pool held 41 MB reading the 100,000-symbol input (row groups of 262,144 rows), 28 MB with
this (docs/performance.md, "The peak at 100K keys")."""


def _conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Cast timestamps to us/UTC (and drop file metadata) so every batch has ``target``."""
    if batch.schema.equals(target, check_metadata=False):
        return batch if batch.schema.metadata is None else batch.replace_schema_metadata(None)
    arrays = []
    for arr, f in zip(batch.columns, target, strict=True):
        arrays.append(arr if arr.type == f.type else arr.cast(f.type, safe=False))
    return pa.RecordBatch.from_arrays(arrays, schema=target)
