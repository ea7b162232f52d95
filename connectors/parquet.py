"""``kind: parquet`` source and sink.

The source streams a file, every Parquet file under a directory, or every file a glob matches,
batch by batch (``ParquetFile.iter_batches``), so memory stays bounded by a row group whatever
the size of the data. Timestamps in other units or without a time zone are cast to
``timestamp[us, UTC]`` (naive timestamps are taken to be UTC; nanoseconds are truncated).

The sink streams batches to a ``pq.ParquetWriter`` with the settings measured fastest here
(dictionary encoding only on string columns, no statistics, no compression by default), into a
hidden temporary file beside the target that takes its place on ``close``
(``tickflow.connectors.atomic.publish``): a file at the target path is always complete. Its
key-value metadata records the run's provenance (job YAML, its sha256, tickflow version, git
commit); :func:`read_provenance` reads it back.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, ValidationInfo, field_validator

from tickflow.connectors.atomic import publish
from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Sink,
    Source,
    sink,
    source,
)
from tickflow.connectors.part_checksums import part_digest, verify_part
from tickflow.connectors.stale_temp import remove_dead_temp_files, temp_path
from tickflow.engine.errors import SinkError, SourceError

Compression = Literal["lz4", "zstd", "snappy", "gzip", "brotli", "none"]
_LEVELS = {"zstd": (1, 22), "lz4": (1, 12), "gzip": (1, 9), "brotli": (0, 11)}
"""Compression levels each codec accepts (snappy and none take none)."""

_TS_UTC = pa.timestamp("us", tz="UTC")
_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
ColumnType = Literal["timestamp", "string", "float64", "int64", "bool"]
_COLUMN_TYPES = {"timestamp": _TS_UTC, "string": pa.string(), "float64": pa.float64(),
                 "int64": pa.int64(), "bool": pa.bool_()}
_PROVENANCE_PREFIX = "tickflow."


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
        target = pa.schema([schema.field(c) for c in cols])
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
                pf = pq.ParquetFile(file, pre_buffer=False)
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


def _conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Cast timestamps to us/UTC (and drop file metadata) so every batch has ``target``."""
    if batch.schema.equals(target, check_metadata=False):
        return batch if batch.schema.metadata is None else batch.replace_schema_metadata(None)
    arrays = []
    for arr, f in zip(batch.columns, target, strict=True):
        arrays.append(arr if arr.type == f.type else arr.cast(f.type, safe=False))
    return pa.RecordBatch.from_arrays(arrays, schema=target)


# --------------------------------------------------------------------------- sink

class AtomicParquetWriter:
    """A streamed Parquet writer that writes to a hidden temp file and renames it on close.

    Batches are buffered to whole row groups of ``row_group_rows`` (pyarrow starts a row group
    on every write call, so writing small batches straight through would make tiny ones).
    """

    def __init__(self, path: str | Path, schema: pa.Schema, *, compression: str = "lz4",
                 compression_level: int | None = None, row_group_rows: int = 262_144,
                 statistics: bool = False, metadata: dict[str, str] | None = None):
        self.path = Path(os.path.expanduser(str(path)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"parquet sink: cannot create the directory of "
                            f"{str(self.path)!r}: {exc}") from None
        remove_dead_temp_files(self.path)  # left by a writer that was killed
        self.tmp_path = temp_path(self.path)
        meta = dict(schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in (metadata or {}).items()})
        self.schema = schema.with_metadata(meta)
        strings = [f.name for f in schema
                   if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                   or (pa.types.is_dictionary(f.type)
                       and (pa.types.is_string(f.type.value_type)
                            or pa.types.is_large_string(f.type.value_type)))]
        self.row_group_rows = row_group_rows
        self.rows = 0
        self.row_groups = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._closed = False
        try:
            self._writer = pq.ParquetWriter(
                self.tmp_path, self.schema,
                compression=None if compression == "none" else compression,
                compression_level=compression_level, use_dictionary=strings or False,
                write_statistics=statistics)
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"parquet sink: cannot write {str(self.path)!r}: {exc}") from None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise SinkError(f"parquet sink {str(self.path)!r} is already closed")
        if not batch.num_rows:
            return
        if not batch.schema.equals(self.schema, check_metadata=False) and (
                batch.schema.names != self.schema.names
                or batch.schema.types != self.schema.types):
            raise SinkError(f"parquet sink {str(self.path)!r}: batch schema\n{batch.schema}"
                            f"\ndoes not match the file's schema\n{self.schema}")
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending_rows:
            return
        table = pa.Table.from_batches(
            [b if b.schema.metadata is None else b.replace_schema_metadata(None)
             for b in self._pending]).replace_schema_metadata(self.schema.metadata)
        whole = self._pending_rows if final else \
            self._pending_rows - self._pending_rows % self.row_group_rows
        try:
            self._writer.write_table(table.slice(0, whole), row_group_size=self.row_group_rows)
        except (OSError, pa.ArrowException) as exc:
            self.abort()
            raise SinkError(f"parquet sink: cannot write {str(self.path)!r}: {exc}") from None
        self.row_groups += -(-whole // self.row_group_rows)
        rest = table.slice(whole)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        """Write what is buffered, finish the file and move it to its final path."""
        if self._closed:
            return
        self._flush(final=True)
        self._closed = True
        try:
            self._writer.close()
            publish(self.tmp_path, self.path)
        except (OSError, pa.ArrowException) as exc:
            self._remove_tmp()
            raise SinkError(f"parquet sink: cannot finish {str(self.path)!r}: {exc}") from None

    def abort(self) -> None:
        """Give up: close and delete the temp file; the target path is left untouched."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(OSError):
            self.tmp_path.unlink(missing_ok=True)


class ParquetSinkConfig(ConnectorConfig):
    """Write the job's output columns to one Parquet file."""

    kind: Literal["parquet"] = "parquet"
    path: str = Field(min_length=1, description="output file; parent directories are created, "
                                                "an existing file is replaced when the job ends")
    compression: Compression = Field("none", description="column compression codec (none: "
                                                         "fastest to write; speed against "
                                                         "size: docs/performance.md)")
    compression_level: int | None = Field(
        None, description="codec level (zstd 1-22, lz4 1-12, gzip 1-9, brotli 0-11); "
                          "default: the codec's own")
    row_group_rows: int = Field(262_144, ge=1_024, le=16_777_216,
                                description="rows per row group (larger: better compression "
                                            "and scans, more memory while writing)")
    statistics: bool = Field(False, description="write column min/max statistics (lets readers "
                                                "skip row groups; slower to write)")

    @field_validator("path")
    @classmethod
    def _not_dir(cls, value: str) -> str:
        if value.endswith(("/", os.sep)):
            raise ValueError("give a file name, not a directory")
        return value

    @field_validator("compression_level")
    @classmethod
    def _level_fits_codec(cls, level: int | None, info: ValidationInfo) -> int | None:
        codec = info.data.get("compression")
        if level is None or codec is None:
            return level
        bounds = _LEVELS.get(codec)
        if bounds is None:
            raise ValueError(f"compression {codec!r} takes no level, found {level}")
        if not bounds[0] <= level <= bounds[1]:
            raise ValueError(f"expected {bounds[0]}-{bounds[1]} for {codec}, found {level}")
        return level


@sink("parquet", config=ParquetSinkConfig,
      summary="write the output to a Parquet file (atomic rename, provenance in the metadata)")
class ParquetSink(Sink):
    """Streams the job's output into one Parquet file."""

    config: ParquetSinkConfig

    def __init__(self, config: ParquetSinkConfig, context: RunContext):
        super().__init__(config, context)
        self._writer: AtomicParquetWriter | None = None
        self._parts: PartFiles | None = None

    # checkpointed runs write part files, committed at each checkpoint (see PartFiles)

    def seek(self, position: dict[str, int] | None) -> None:
        """Switch to part files; keep those a checkpoint committed, drop any later ones."""
        cfg = self.config
        self._parts = PartFiles(cfg.path, compression=cfg.compression,
                                compression_level=cfg.compression_level,
                                row_group_rows=cfg.row_group_rows, statistics=cfg.statistics)
        self._parts.seek(position)

    def checkpoint(self) -> dict[str, int]:
        assert self._parts is not None, "seek() comes first in a checkpointed run"
        return self._parts.commit()

    def release(self) -> None:
        if self._parts is not None:
            self._parts.remove()

    def open(self, schema: pa.Schema) -> None:
        if self._parts is not None:
            self._parts.schema = schema
            return
        if self._writer is not None:
            return
        cfg = self.config
        self._writer = AtomicParquetWriter(cfg.path, schema, compression=cfg.compression,
                                           compression_level=cfg.compression_level,
                                           row_group_rows=cfg.row_group_rows,
                                           statistics=cfg.statistics,
                                           metadata=self.context.provenance())

    def write(self, batch: pa.RecordBatch) -> None:
        if self._parts is not None:
            self._parts.write(batch)
            return
        if self._writer is None:
            self.open(batch.schema)
        assert self._writer is not None
        self._writer.write(batch)

    def close(self) -> str | None:
        if self._parts is not None and self._parts.schema is not None:
            self._parts.commit()
            self._writer = self._parts.merge(self.context.provenance())
        if self._writer is None:
            return f"parquet: nothing written to {self.config.path} (no output)"
        w = self._writer
        w.close()
        size = w.path.stat().st_size
        return (f"parquet: {w.rows:,} rows x {len(w.schema)} columns -> {w.path} "
                f"({w.row_groups} row group{'s' if w.row_groups != 1 else ''}, "
                f"{size / 1e6:.1f} MB)")

    def abort(self) -> None:
        """Drop the partial output (the engine may call this when a run fails)."""
        if self._writer is not None:
            self._writer.abort()


class PartFiles:
    """The output of a checkpointed run as numbered part files, merged when the run ends.

    Part ``k`` (``.<name>.parts/part-<k>.parquet`` beside the target) holds the rows written
    between checkpoints ``k`` and ``k+1``; ``commit`` finishes it (atomic rename) and returns
    ``{"parts": committed count, "rows": committed rows}``, which the checkpoint records. On a
    restart ``seek`` deletes every part past the checkpoint's count, so the rows after it are
    written exactly once more. ``merge`` streams the parts into the target file.
    """

    def __init__(self, path: str, *, compression: str, row_group_rows: int,
                 statistics: bool, compression_level: int | None = None):
        self.path = Path(os.path.expanduser(path))
        self.dir = self.path.with_name(f".{self.path.name}.parts")
        self.options: dict[str, Any] = {
            "compression": compression, "compression_level": compression_level,
            "row_group_rows": row_group_rows, "statistics": statistics}
        self.schema: pa.Schema | None = None
        self.count = 0
        self.rows = 0
        self.digests: list[list[object]] = []  # [rows, sha256] per committed part
        self._writer: AtomicParquetWriter | None = None

    def _part(self, k: int) -> Path:
        return self.dir / f"part-{k:06d}.parquet"

    def seek(self, position: dict[str, int] | None) -> None:
        import shutil

        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a killed merge
            stale.unlink(missing_ok=True)
        if position is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.count = self.rows = 0
            self.digests = []
            return
        self.count, self.rows = int(position["parts"]), int(position["rows"])
        self.digests = list(position.get("digests", []))  # absent in older checkpoints
        missing = [k for k in range(self.count) if not self._part(k).is_file()]
        if missing:
            raise SinkError(f"parquet sink {str(self.path)!r}: committed part file "
                            f"{self._part(missing[0])} is missing; run with --reset-state")
        for k, expected in enumerate(self.digests[:self.count]):
            verify_part(self._part(k), expected, f"parquet sink {str(self.path)!r}")
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                done = p.name.startswith("part-") and p.suffix == ".parquet" and \
                    p.stem[5:].isdigit() and int(p.stem[5:]) < self.count
                if not done:
                    p.unlink(missing_ok=True)

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if self._writer is None:
            self._writer = AtomicParquetWriter(self._part(self.count),
                                               self.schema or batch.schema, **self.options)
        self._writer.write(batch)

    def commit(self) -> dict[str, int]:
        if self._writer is not None:
            self._writer.close()
            self.rows += self._writer.rows
            self.digests.append(part_digest(self._part(self.count)))
            self.count += 1
            self._writer = None
        return {"parts": self.count, "rows": self.rows, "digests": list(self.digests)}

    def merge(self, metadata: dict[str, str]) -> AtomicParquetWriter:
        """Write every committed part, in order, into the target file (atomically)."""
        assert self.schema is not None
        out = AtomicParquetWriter(self.path, self.schema, metadata=metadata, **self.options)
        try:
            for k in range(self.count):
                if k < len(self.digests):
                    verify_part(self._part(k), self.digests[k],
                                f"parquet sink {str(self.path)!r}")
                pf = pq.ParquetFile(self._part(k), pre_buffer=False)
                for batch in pf.iter_batches(batch_size=self.options["row_group_rows"]):
                    if batch.schema.types != self.schema.types:
                        batch = batch.cast(self.schema.remove_metadata())
                    out.write(batch)
        except (OSError, pa.ArrowException) as exc:
            out.abort()
            raise SinkError(f"parquet sink: cannot merge the parts of {str(self.path)!r}: "
                            f"{exc}") from None
        except BaseException:
            out.abort()
            raise
        return out

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def read_provenance(path: str | Path) -> dict[str, str]:
    """The ``tickflow.*`` key-value metadata of a Parquet file, without the prefix.

    Keys written by the sink: ``job_name``, ``job_path``, ``job_yaml``, ``job_sha256``,
    ``version`` and, when known, ``git_commit``.
    """
    try:
        meta = pq.read_metadata(os.path.expanduser(str(path))).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read the metadata of {str(path)!r}: {exc}") from None
    out = {}
    for k, v in meta.items():
        key = k.decode("utf-8", "replace")
        if key.startswith(_PROVENANCE_PREFIX):
            out[key[len(_PROVENANCE_PREFIX):]] = v.decode("utf-8", "replace")
    return out
