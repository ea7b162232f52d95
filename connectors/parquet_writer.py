"""The atomic Parquet writer every Parquet output goes through, and its provenance metadata.

It streams batches to a ``pq.ParquetWriter`` with the settings measured fastest here
(dictionary encoding only on string columns, no statistics, no compression by default,
65,536-value write batches), into a
hidden temporary file beside the target that takes its place on ``close``
(``tickflow.connectors.atomic.publish``): a file at the target path is always complete. Its
key-value metadata records the run's provenance (job YAML, its sha256, tickflow version, git
commit); :func:`read_provenance` reads it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.connectors.atomic import publish
from tickflow.connectors.stale_temp import remove_dead_temp_files, temp_path
from tickflow.engine.errors import SinkError, SourceError

_PROVENANCE_PREFIX = "tickflow."
WRITE_BATCH_SIZE = 65_536
"""Values a column writer encodes between its checks of the page size (pyarrow's default is
1,024): fewer, longer calls into the encoders. Writing the research job's 5M-row output
alone: 1.31-1.39 s of user CPU instead of 1.53 (medians of 5, docs/performance.md)."""
ROW_GROUP_BYTES = 32 * 1024 * 1024
"""Default bound on a row group's size in memory: a wide output's row groups (the research
job's ~420 bytes a row: 110 MB at 262,144 rows) are held whole while written, so its rows
would otherwise set the memory in flight (docs/performance.md, "Memory in flight")."""
ROW_GROUP_STEP = 65_536
"""A row group cut down by bytes keeps a multiple of this many rows (at least this many): a
multiple of the executor's default morsel, so whole batches make whole row groups, and
readers still get row groups large enough to scan well."""


class AtomicParquetWriter:
    """A streamed Parquet writer that writes to a hidden temp file and renames it on close.

    Batches are buffered to whole row groups of ``row_group_rows`` (pyarrow starts a row group
    on every write call, so writing small batches straight through would make tiny ones).
    A row group of that many rows larger than ``row_group_bytes`` (Arrow's size of the first
    batch's rows) holds fewer: the largest multiple of 65,536 rows within the bound, at
    least 65,536 (``None``: rows alone). After each row group, Arrow's pool gives back what
    writing it freed.
    """

    def __init__(self, path: str | Path, schema: pa.Schema, *, compression: str = "lz4",
                 compression_level: int | None = None, row_group_rows: int = 262_144,
                 row_group_bytes: int | None = ROW_GROUP_BYTES, statistics: bool = False,
                 metadata: dict[str, str] | None = None, hashed: bool = False):
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
        self._row_group_bytes = row_group_bytes  # None: rows alone; applied on the first batch
        self.rows = 0
        self.row_groups = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._closed = False
        self._joined = False  # filled by join(): nothing left to write
        self.sha256: str | None = None  # with ``hashed``: the file's, once closed
        try:
            self._file = _HashingFile(self.tmp_path.open("wb")) if hashed else None
            self._writer = pq.ParquetWriter(
                self._file or self.tmp_path, self.schema,
                compression=None if compression == "none" else compression,
                compression_level=compression_level, use_dictionary=strings or False,
                write_statistics=statistics, write_batch_size=WRITE_BATCH_SIZE)
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
        if self._row_group_bytes is not None:
            self.row_group_rows = rows_within(self.row_group_rows, self._row_group_bytes,
                                              batch.nbytes / batch.num_rows)
            self._row_group_bytes = None
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
        del table, rest

    def join(self, parts: list[Path], trusted: list[Any] | None = None) -> list[str | None]:
        """Fill the file with the row groups of ``parts`` (Parquet files of this schema,
        written with these options), copied without decoding them (``parquet_concat``);
        nothing may have been written before. Returns each part's sha256 (None for a part
        still the file of its ``trusted`` identity, not read again); ``close`` then
        publishes the file.

        Raises:
            parquet_concat.Unsupported: a part cannot be joined as it is (the caller decodes).
        """
        from tickflow.connectors.parquet_concat import concat

        assert not self.rows and not self._closed, "join() fills an empty writer"
        self._writer.close()  # no row group yet: the file is the footer the result takes
        template = self.tmp_path.read_bytes()
        with self.tmp_path.open("wb") as out:
            digests, self.rows, self.row_groups = concat(parts, template, out, trusted)
        self._joined = True
        return digests

    def adopt(self, source: Path, rows: int, row_groups: int) -> None:
        """Make the file the finished Parquet file ``source`` itself (of this schema, its
        footer holding this file's metadata), by a hard link: not a byte is copied. Nothing
        may have been written before; ``close`` then publishes it (``source`` stays).

        Raises:
            OSError: no hard link here (another file system, or none at all).
        """
        assert not self.rows and not self._closed, "adopt() fills an empty writer"
        self._writer.close()
        self._remove_tmp()
        os.link(source, self.tmp_path)
        self.rows, self.row_groups, self._joined = rows, row_groups, True

    def close(self) -> None:
        """Write what is buffered, finish the file and move it to its final path."""
        if self._closed:
            return
        self._flush(final=True)
        self._closed = True
        try:
            if not self._joined:
                self._writer.close()
            if self._file is not None:
                self._file.close()
                self.sha256 = self._file.hexdigest()
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
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(OSError):
            self.tmp_path.unlink(missing_ok=True)


def rows_within(rows: int, max_bytes: int, row_bytes: float) -> int:
    """``rows`` a row group, or fewer if that many rows of ``row_bytes`` exceed ``max_bytes``:
    the largest multiple of :data:`ROW_GROUP_STEP` within it, never below that step (nor
    above ``rows``)."""
    if rows * row_bytes <= max_bytes:
        return rows
    steps = max(1, int(max_bytes // (row_bytes * ROW_GROUP_STEP)))
    return min(rows, steps * ROW_GROUP_STEP)


class _HashingFile:
    """A file that keeps the sha256 of what is written to it: a part's digest, recorded at
    its commit, is then made on the writer's thread as the bytes go out, instead of by
    reading the part back on the loop's (0.4-1 s a checkpoint at 100K symbols)."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._digest = hashlib.sha256()
        self._size = 0
        self.closed = False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self._size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self.closed = True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def write_parquet_table(table: pa.Table, path: str | Path, metadata: dict[str, str]) -> None:
    """Write a whole table atomically (nothing at ``path`` unless every batch was written)."""
    writer = AtomicParquetWriter(path, table.schema, metadata=metadata)
    try:
        for batch in table.to_batches():
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.close()


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
