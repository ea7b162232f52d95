"""The rocksdb state backend: one RocksDB value per (step, block of keys), via rocksdict.

Each checkpoint holds a RocksDB database (``<checkpoint>/rocksdb``) with one column family per
step (named by the step id; the database itself belongs to one job). A value packs the whole
step state (every field, in declared order) of consecutive key ids as numpy records, about 256
KB of them (:func:`block_keys`); its key is the first key id as 8 big-endian bytes, so iteration
runs in key id order and the values joined are every key's records. The keys per value follow
from the first value's length, so checkpoints of format 1 (one value per key) read the same.
Each step is written as one sorted SST file ingested into its column family (a bulk write batch
that bypasses the memtable); the database is closed before the checkpoint is committed, and
RocksDB's block checksums catch a damaged file on read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rocksdict

from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import (
    BackgroundDigests,
    FileDigests,
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
    return rec.view(np.dtype((np.void, rec.dtype.itemsize))).tolist()


BLOCK_BYTES = 1 << 18
"""About how many bytes of records one RocksDB value holds."""


def block_keys(itemsize: int) -> int:
    """Keys per value: a value holds the records of consecutive key ids, so that a checkpoint
    of 100,000 keys makes a few hundred puts per step, not 100,000 (each costs about half a
    microsecond in Python)."""
    return max(1, BLOCK_BYTES // max(itemsize, 1))


def _pack(writer: rocksdict.SstFileWriter, fields: dict[str, np.ndarray], dtype: np.dtype,
          n: int, per: int) -> None:
    """Put the records of keys ``0..n`` a block of ``per`` keys at a time.

    One block's records are packed at a time, in a buffer that stays in cache: packing the
    whole step first wrote each field across all of it (a step of 100,000 keys is up to
    100 MB) and held that copy as well as the state.
    """
    block = np.empty(per, dtype=dtype)
    for key, lo in zip(key_bytes(np.arange(0, n, per)), range(0, n, per), strict=True):
        rec = block[:min(per, n - lo)]
        for name, arr in fields.items():
            rec[name] = arr[lo:lo + len(rec)]
        writer[key] = rec.tobytes()


class RocksDBStateBackend(StateBackend):
    """State as RocksDB key-values: column family = step, key = a block's first key id, value =
    the packed records of the block's keys."""

    name = "rocksdb"

    def write(self, directory: Path, snapshot: StateSnapshot) -> None:
        self._write(directory, snapshot, None)

    def write_hashed(self, directory: Path, snapshot: StateSnapshot) -> FileDigests:
        """:meth:`write`, each ingested file hashed on a thread while the next steps are
        written (:class:`~tickflow.engine.state.backend.BackgroundDigests`): the SST writer
        drops its file from the page cache, and the manifest's hash read it all back after."""
        digests = BackgroundDigests(directory)
        try:
            self._write(directory, snapshot, digests)
        finally:
            done = digests.close()
        return done

    def _write(self, directory: Path, snapshot: StateSnapshot,
               digests: BackgroundDigests | None) -> None:
        """Each step's records go to a sorted SST file that is ingested into its column family.

        Ingesting pre-sorted files skips the memtable and its flush (about twice as fast as
        write batches here); values are not compressed (state is mostly noise-like floats).
        """
        path = directory / _DIR
        layout, rows = snapshot.layout(), snapshot.rows()
        opts = _options(create=True)
        # every column family made by the open, at once: one by one, RocksDB rewrites its
        # OPTIONS file for each (1.2 s for 53 steps, 0.2 s at once)
        opts.create_missing_column_families(True)
        db = rocksdict.Rdict(str(path), opts, column_families={
            _cf(sid): _options(create=True) for sid in snapshot.steps})
        try:
            ingest = rocksdict.IngestExternalFileOptions()
            ingest.set_move_files(True)
            for sid, fields in snapshot.steps.items():
                cf = db.get_column_family(_cf(sid))
                n = rows[sid]
                dtype = record_dtype(layout[sid])
                if n == 0 or not dtype.itemsize:  # no keys, or a stateless step
                    continue
                per = block_keys(dtype.itemsize)
                sst = directory / f".{len(sid)}-{abs(hash(sid))}.sst"
                writer = rocksdict.SstFileWriter(options=opts)
                writer.open(str(sst))
                _pack(writer, fields, dtype, n, per)
                writer.finish()
                before = {p.name for p in path.glob("*.sst")}
                cf.ingest_external_file([str(sst)], ingest)
                sst.unlink(missing_ok=True)
                for p in path.glob("*.sst"):  # the ingested file, under the database's name
                    if digests is not None and p.name not in before:
                        digests.add(p)
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
            raw = bytearray().join(cf.values(read_opt=scan))  # writable: so are the views
            expected = n_rows
        else:
            raw = _read_rows(cf, sid, ids, dtype.itemsize)
            expected = len(ids)
        if len(raw) != expected * dtype.itemsize:
            raise StateError(f"step '{sid}': expected {expected} keys of {dtype.itemsize} "
                             f"bytes, found {len(raw)} bytes in all")
        rec = np.frombuffer(raw, dtype=dtype)
        return {f.name: rec[f.name] for f in fields}  # views of one buffer: no copy


def _read_rows(cf: rocksdict.Rdict, sid: str, ids: np.ndarray, itemsize: int) -> bytearray:
    """The records of rows ``ids`` (in order), from the blocks that hold them."""
    first = cf.get(key_bytes(np.zeros(1, np.int64)))[0] if ids.size else b""
    if first is None or (ids.size and (not first or len(first) % itemsize)):
        raise StateError(f"step '{sid}': no stored state for its first keys")
    per = max(len(first) // itemsize, 1)  # keys per value (1 in checkpoints of format 1)
    blocks, where = np.unique(ids // per, return_inverse=True)
    values = cf.get(key_bytes(blocks * per))
    if any(v is None for v in values):
        raise StateError(f"step '{sid}': a requested key has no stored state")
    starts = np.zeros(len(values), dtype=np.int64)
    np.cumsum([len(v) // itemsize for v in values[:-1]], out=starts[1:])
    recs = np.frombuffer(b"".join(values), dtype=np.dtype((np.void, itemsize)))
    return bytearray(recs[starts[where] + ids % per].tobytes())
