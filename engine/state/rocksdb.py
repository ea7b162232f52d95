"""The rocksdb state backend: one RocksDB value per (step, key), via rocksdict.

Each checkpoint holds a RocksDB database (``<checkpoint>/rocksdb``) with one column family per
step (named by the step id; the database itself belongs to one job). A key is the key id as 8
big-endian bytes, so iteration runs in key id order; a value packs that key's whole step state
(every field, in declared order) as one numpy record. Each step is written as one sorted SST
file ingested into its column family (a bulk write batch that bypasses the memtable); the
database is closed before the checkpoint is committed, and RocksDB's block checksums catch a
damaged file on read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rocksdict

from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import (
    TIER_KEY,
    StateBackend,
    StateSnapshot,
    StepLayout,
    check_ids,
    record_dtype,
)

_DIR = "rocksdb"


def _options(create: bool) -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(create)
    opts.set_paranoid_checks(True)
    opts.set_compression_type(rocksdict.DBCompressionType.none())
    return opts


def _cf(step_id: str) -> str:
    """Column family of a step (prefixed: a step may be called ``default``)."""
    return f"step.{step_id}"


def key_bytes(key_ids: np.ndarray) -> list[bytes]:
    """Key ids as 8-byte big-endian keys (sorted bytes = sorted ids)."""
    return values(np.asarray(key_ids, dtype=">u8"))


def values(rec: np.ndarray) -> list[bytes]:
    """Each row of a contiguous array as one bytes object (made in C, not sliced in Python)."""
    rec = np.ascontiguousarray(rec)
    if not rec.dtype.itemsize:  # a stateless step: an empty value per key
        return [b""] * len(rec)
    return rec.view(np.dtype((np.void, rec.dtype.itemsize))).tolist()


class RocksDBStateBackend(StateBackend):
    """State as RocksDB key-values: column family = step, key = key id, value = packed record."""

    name = "rocksdb"

    def write(self, directory: Path, snapshot: StateSnapshot) -> None:
        """Each step's records go to a sorted SST file that is ingested into its column family.

        Ingesting pre-sorted files skips the memtable and its flush (about twice as fast as
        write batches here); values are not compressed (state is mostly noise-like floats).
        """
        path = directory / _DIR
        layout, rows = snapshot.layout(), snapshot.rows()
        cache: list[bytes] = []

        def all_keys(n: int) -> list[bytes]:  # ids 0..n-1, made once for every step
            if len(cache) < n:
                cache[:] = key_bytes(np.arange(n))
            return cache[:n]

        opts = _options(create=True)
        db = rocksdict.Rdict(str(path), opts)
        try:
            ingest = rocksdict.IngestExternalFileOptions()
            ingest.set_move_files(True)
            for sid, fields in snapshot.steps.items():
                cf = db.create_column_family(_cf(sid), _options(create=True))
                n = rows[sid]
                if n == 0:
                    continue
                rec = np.empty(n, dtype=record_dtype(layout[sid]))
                for name, arr in fields.items():
                    rec[name] = arr
                sst = directory / f".{len(sid)}-{abs(hash(sid))}.sst"
                writer = rocksdict.SstFileWriter(options=opts)
                writer.open(str(sst))
                ids = snapshot.steps[sid].get(TIER_KEY)  # a step's keys saved apart
                keys = key_bytes(ids) if ids is not None else all_keys(n)
                for key, value in zip(keys, values(rec), strict=True):
                    writer[key] = value
                writer.finish()
                cf.ingest_external_file([str(sst)], ingest)
                sst.unlink(missing_ok=True)
        except Exception as exc:  # rocksdict raises plain exceptions
            raise StateError(f"rocksdb state {path}: cannot write: {exc}") from None
        finally:
            db.close()

    def read(self, directory: Path, layout: dict[str, StepLayout], rows: dict[str, int],
             key_ids: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
        path = directory / _DIR
        if not path.is_dir():
            raise StateError(f"rocksdb state {path}: missing")
        opts = _options(create=False)
        try:
            families = rocksdict.Rdict.list_cf(str(path), opts)
            missing = [sid for sid in layout if _cf(sid) not in families]
            if missing:
                raise StateError(f"rocksdb state {path}: no column family for step(s) "
                                 f"{', '.join(missing)}")
            db = rocksdict.Rdict(str(path), opts, column_families={
                _cf(sid): rocksdict.Options(raw_mode=True) for sid in layout},
                access_type=rocksdict.AccessType.read_only())
        except StateError:
            raise
        except Exception as exc:  # rocksdict raises plain exceptions for damaged files
            raise StateError(f"rocksdb state {path}: cannot open: {exc}") from None
        try:
            return {sid: self._read_step(db, sid, fields, rows[sid],
                                         check_ids(key_ids, rows[sid], sid))
                    for sid, fields in layout.items()}
        except StateError:
            raise
        except Exception as exc:
            raise StateError(f"rocksdb state {path}: cannot read: {exc}") from None
        finally:
            db.close()

    @staticmethod
    def _read_step(db: rocksdict.Rdict, sid: str, fields: StepLayout, n_rows: int,
                   ids: np.ndarray | None) -> dict[str, np.ndarray]:
        if not fields:  # a stateless step (e.g. midprice): nothing stored per key
            return {}
        dtype = record_dtype(fields)
        cf = db.get_column_family(_cf(sid))
        if ids is None:
            scan = rocksdict.ReadOptions()
            scan.fill_cache(False)  # read once, front to back
            scan.set_readahead_size(8 << 20)
            values = list(cf.values(read_opt=scan))
            expected = n_rows
        else:
            values = cf.get(key_bytes(ids))
            expected = len(ids)
            if any(v is None for v in values):
                raise StateError(f"step '{sid}': a requested key has no stored state")
        raw = bytearray().join(values)  # writable, so the field views below are too
        if len(values) != expected or len(raw) != expected * dtype.itemsize:
            raise StateError(f"step '{sid}': expected {expected} keys of {dtype.itemsize} "
                             f"bytes, found {len(values)} values of {len(raw)} bytes in all")
        rec = np.frombuffer(raw, dtype=dtype)
        return {f.name: rec[f.name] for f in fields}  # views of one buffer: no copy
