"""Parquet datasets split by key hash (``run-job partition``), and which files a task reads.

Why: interleaved ticks put every symbol in every row group, so each Dask partition task used to
scan the whole input to keep its keys' rows. ``write_partitioned_dataset`` rewrites the input
once as ``part-NNNNN.parquet`` files, part ``j`` holding the keys with
``crc32(utf-8 key) % parts == j`` (the hash the Dask executor splits keys by,
:mod:`tickflow.engine.executors.partition`), each key's rows in their original order, plus a
manifest (``_tickflow_dataset.json``: key column, hash, part count, each file's rows, row groups
and keys). A task of a run with ``P`` partitions then reads only the files holding its keys
(:func:`dataset_files`); when ``P`` divides the part count, every file belongs to one task and
is read whole, without a key filter.

The directory is an ordinary Parquet dataset: the parquet source reads it (every
``*.parquet`` below it, in name order; the manifest starts with ``_`` and is skipped), and a
local run of it gives each key's rows the same features as a run of the original file (rows
come grouped by part instead of interleaved).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tickflow.connectors.base import RunContext
from tickflow.connectors.parquet import (
    AtomicParquetWriter,
    ParquetSource,
    ParquetSourceConfig,
    resolve_parquet_paths,
)
from tickflow.engine.errors import SinkError, SourceError
from tickflow.engine.executors.partition import (
    PARTITION_HASH,
    Placement,
    partition_ids,
    partition_of,
)

MANIFEST = "_tickflow_dataset.json"
PART_NAME = "part-{:05d}.parquet"
FORMAT = 1
MAX_PARTS = 4096


@dataclass(frozen=True)
class DatasetFile:
    """One part of a partitioned dataset, as its manifest records it."""

    path: Path
    part: int
    rows: int
    row_groups: int
    keys: tuple[str | None, ...]


@dataclass(frozen=True)
class DatasetManifest:
    """What ``run-job partition`` wrote: the key column, the part count and every part."""

    directory: Path
    by: str
    parts: int
    rows: int
    files: tuple[DatasetFile, ...]


def write_partitioned_dataset(source_path: str, out_dir: str, *, by: str = "symbol",
                              parts: int = 8, compression: str = "lz4",
                              row_group_rows: int = 131_072,
                              batch_rows: int = 1 << 20) -> DatasetManifest:
    """Rewrite the Parquet input at ``source_path`` as a dataset split by ``by`` into ``parts``.

    The parts are written into a hidden staging directory beside ``out_dir`` and swapped in
    when all are complete with the manifest, so ``out_dir`` never holds half a dataset. An
    existing dataset at ``out_dir`` is replaced; any other non-empty directory is refused.

    Raises:
        SourceError: the input cannot be read or has no column ``by``.
        SinkError: ``out_dir`` holds other files, is the input, or cannot be written.
    """
    if not 1 <= parts <= MAX_PARTS:
        raise SinkError(f"partition: --parts must be in [1, {MAX_PARTS}], found {parts}")
    target = Path(os.path.expanduser(out_dir)).resolve()
    source = ParquetSource(ParquetSourceConfig(path=source_path),
                           RunContext(job_name="partition", quiet=True))
    inputs = [p.resolve() for p in source.files()]
    if any(p == target or target in p.parents for p in inputs):
        raise SinkError(f"partition: the output {str(target)!r} holds the input; choose "
                        f"another directory")
    _check_replaceable(target)
    schema = source.schema()
    if by not in schema.names:
        raise SourceError(f"partition: the input has no column {by!r} (its columns: "
                          f"{', '.join(schema.names)})")
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}")
    meta = {"tickflow.dataset_by": by, "tickflow.dataset_parts": str(parts),
            "tickflow.partition_hash": PARTITION_HASH}
    writers = [AtomicParquetWriter(staging / PART_NAME.format(j), schema,
                                   compression=compression, row_group_rows=row_group_rows,
                                   metadata={**meta, "tickflow.dataset_part": str(j)})
               for j in range(parts)]
    keys: list[set[str | None]] = [set() for _ in range(parts)]
    try:
        for batch in source.batches(None, batch_rows):
            _split(batch, by, parts, writers, keys)
        for w in writers:
            w.close()
        manifest = _manifest(staging, by, parts, writers, keys)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _swap_in(staging, target)
    except BaseException:
        for w in writers:
            w.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    found = read_manifest(target)
    assert found is not None
    return found


def _split(batch: pa.RecordBatch, by: str, parts: int, writers: list[AtomicParquetWriter],
           keys: list[set[str | None]]) -> None:
    """Each part's rows of ``batch``, in their order (a stable sort by part id)."""
    column = batch.column(by)
    ids = partition_ids(column, parts)
    for value in pc.unique(column).to_pylist():
        keys[partition_of(value, parts)].add(None if value is None else str(value))
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=parts)
    grouped = batch.take(pa.array(order))
    start = 0
    for j in np.flatnonzero(counts):
        writers[j].write(grouped.slice(start, int(counts[j])))
        start += int(counts[j])


def _manifest(staging: Path, by: str, parts: int, writers: list[AtomicParquetWriter],
              keys: list[set[str | None]]) -> dict[str, Any]:
    files = []
    for j, w in enumerate(writers):
        groups = pq.ParquetFile(w.path).metadata.num_row_groups
        files.append({"path": w.path.name, "part": j, "rows": w.rows, "row_groups": groups,
                      "keys": sorted(keys[j], key=lambda k: (k is not None, k or ""))})
    return {"format": FORMAT, "by": by, "parts": parts, "hash": PARTITION_HASH,
            "rows": sum(w.rows for w in writers), "files": files}


def _check_replaceable(target: Path) -> None:
    if target.is_file():
        raise SinkError(f"partition: {str(target)!r} is a file; the output is a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise SinkError(f"partition: refusing to replace {str(target)!r}: it is not empty and "
                        f"holds no {MANIFEST} (not a dataset `run-job partition` wrote)")


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``staging`` directory."""
    _check_replaceable(target)  # again: the directory may have changed during the write
    old = target.with_name(f".{target.name}.old-{staging.name.rsplit('.', 1)[-1]}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: str | Path) -> DatasetManifest | None:
    """The manifest of the dataset directory ``path``, or None when there is none.

    Raises:
        SourceError: a manifest that cannot be parsed or is of another format.
    """
    directory = Path(os.path.expanduser(str(path)))
    file = directory / MANIFEST
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("format") != FORMAT or data.get("hash") != PARTITION_HASH:
            raise ValueError(f"format {data.get('format')!r}, hash {data.get('hash')!r}")
        files = tuple(DatasetFile(path=directory / f["path"], part=int(f["part"]),
                                  rows=int(f["rows"]), row_groups=int(f["row_groups"]),
                                  keys=tuple(f["keys"])) for f in data["files"])
        return DatasetManifest(directory=directory, by=str(data["by"]),
                               parts=int(data["parts"]), rows=int(data["rows"]), files=files)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"parquet source: cannot use the dataset manifest {str(file)!r}: "
                          f"{exc}") from None


def dataset_files(source: Any, key: str, partitions: int, partition: int,
                  placement: Placement | None = None
                  ) -> tuple[list[tuple[Path, bool]], int] | None:
    """The files of ``source`` that a task of ``partition`` reads, and row groups it skips.

    Each file comes with ``True`` when every key in it belongs to ``partition`` (read whole,
    no key filter); a file holding no key of the partition is not opened. None when the source
    is not a dataset split by ``key`` whose manifest lists exactly the source's files (then the
    task scans every file, which is always correct). ``placement``: the run's keys placed by
    rows (:mod:`tickflow.engine.executors.placement`), if any.
    """
    path = getattr(getattr(source, "config", None), "path", None)
    if not isinstance(path, str) or not os.path.isdir(os.path.expanduser(path)):
        return None
    manifest = read_manifest(path)
    if manifest is None or manifest.by != key:
        return None
    listed = {f.path.resolve(): f for f in manifest.files}
    files = resolve_parquet_paths(path)
    if {p.resolve() for p in files} != set(listed):
        return None
    chosen: list[tuple[Path, bool]] = []
    skipped = 0
    for file in files:
        entry = listed[file.resolve()]
        owners = {partition_of(k, partitions, placement) for k in entry.keys}
        if partition in owners:
            rows = _footer_rows(file)
            if rows != entry.rows:
                raise SourceError(f"parquet source {path!r}: {str(file)!r} has {rows:,} rows, "
                                  f"its manifest {entry.rows:,}: the dataset changed since "
                                  f"`run-job partition` wrote it; write it again")
            chosen.append((file, owners == {partition}))
        else:
            skipped += entry.row_groups
    return chosen, skipped


def _footer_rows(file: Path) -> int:
    try:
        return int(pq.read_metadata(file).num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"parquet source: cannot read {str(file)!r}: {exc}") from None
