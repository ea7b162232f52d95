"""``kind: parquet`` sink: the job's output in one Parquet file, written atomically.

A checkpointed run writes part files committed at each checkpoint and merges them at the end;
a Dask run writes one part per key partition into a directory (see
:mod:`tickflow.connectors.parquet_parts`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator

from tickflow.connectors.base import ConnectorConfig, RunContext, Sink, sink
from tickflow.connectors.parquet_parts import (
    PART_NAME,
    PartFiles,
    PartitionPart,
    commit_partition_parts,
    staging_dir,
)
from tickflow.connectors.parquet_writer import AtomicParquetWriter

Compression = Literal["lz4", "zstd", "snappy", "gzip", "brotli", "none"]
_LEVELS = {"zstd": (1, 22), "lz4": (1, 12), "gzip": (1, 9), "brotli": (0, 11)}
"""Compression levels each codec accepts (snappy and none take none)."""


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
    row_group_bytes: int | None = Field(
        32 * 1024 * 1024, ge=1_048_576,
        description="bound on a row group's size in memory: a wider output's row groups hold "
                    "the largest multiple of 65,536 rows within it (at least 65,536); null: "
                    "row_group_rows alone")
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
                                row_group_rows=cfg.row_group_rows,
                                row_group_bytes=cfg.row_group_bytes, statistics=cfg.statistics,
                                metadata=self.context.provenance())
        self._parts.seek(position)

    def checkpoint(self) -> dict[str, int]:
        assert self._parts is not None, "seek() comes first in a checkpointed run"
        return self._parts.commit()

    def release(self) -> None:
        if self._parts is not None:
            self._parts.remove()

    # a partitioned (Dask) run writes a directory of parts, one per key partition: the target
    # path becomes ``<path>/part-NNNNN.parquet``, staged and swapped in once all are written

    def _target(self) -> Path:
        return Path(os.path.expanduser(self.config.path))

    def part(self, run_id: str, partition: int, metadata: dict[str, str]) -> PartitionPart:
        cfg = self.config
        path = staging_dir(self._target(), run_id) / PART_NAME.format(partition)
        return PartitionPart(path, {"compression": cfg.compression,
                                    "compression_level": cfg.compression_level,
                                    "row_group_rows": cfg.row_group_rows,
                                    "row_group_bytes": cfg.row_group_bytes,
                                    "statistics": cfg.statistics},
                             {**self.context.provenance(), **metadata})

    def commit_parts(self, run_id: str, partitions: int,
                     digests: dict[int, list[object]] | None = None) -> list[str]:
        return commit_partition_parts(self._target(), run_id, partitions, digests)

    def discard_parts(self, run_id: str) -> None:
        shutil.rmtree(staging_dir(self._target(), run_id), ignore_errors=True)

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
                                           row_group_bytes=cfg.row_group_bytes,
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
