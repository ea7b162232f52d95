"""Checkpoints: kernel state, source positions and sink positions, committed atomically.

A checkpoint is a directory ``<state root>/<job>/checkpoints/<seq>/`` holding the backend's
files, the key values (``keys.arrow``) and, written last, ``MANIFEST.json``: the job's spec
hash, a fingerprint of the state layout, the source and sink positions, and the size and sha256
of every file. It is built under a temporary name and renamed into place, so a directory with
a manifest is complete; a manifest whose files do not match (a truncated or damaged file) marks
the checkpoint bad, and a restart falls back to the previous good one. The last ``keep``
checkpoints are kept.

A restart resumes from the newest good checkpoint unless it is *final* (the run that wrote it
reached the end of its source), in which case the job starts over. A checkpoint written with a
different state layout (other steps, kernels or window sizes) is refused with a message naming
``--reset-state``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from tickflow.engine.checkpoint_process import CommitFiles
from tickflow.engine.errors import StateError
from tickflow.engine.file_identity import stat_identity
from tickflow.engine.state.backend import (
    FileDigests,
    StateBackend,
    StateSnapshot,
    StepLayout,
    layout_from_json,
    layout_to_json,
    read_keys_state,
)

MANIFEST = "MANIFEST.json"
KEYS_FILE = "keys.arrow"
FORMAT_VERSION = 2
READS_FORMATS = (1, 2)
"""Format 2 saves the keys of a step's wider width tiers apart (``<step>@w<width>``)."""
DEFAULT_ROOT = ".tickflow/state"


@dataclass
class Manifest:
    """What one checkpoint holds; serialised as ``MANIFEST.json``."""

    seq: int
    job_name: str
    spec_sha256: str
    layout_sha256: str
    backend: str
    n_keys: int
    rows: int
    batches: int
    sources: list[dict[str, Any] | None]
    sinks: list[dict[str, Any] | None]
    layout: dict[str, list[list[Any]]] = field(default_factory=dict)
    step_rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Any]] = field(default_factory=dict)
    is_final: bool = False
    page_keys: int | None = None
    created: str = ""
    state_bytes: int = 0
    format: int = FORMAT_VERSION

    def step_layout(self) -> dict[str, StepLayout]:
        return layout_from_json(self.layout)

    def size_bytes(self) -> int:
        return sum(int(v[0]) for v in self.files.values())


def state_root(job_name: str, path: str | None) -> Path:
    """Where a job's checkpoints live: ``<path or .tickflow/state>/<job name>``."""
    return Path(os.path.expanduser(path or DEFAULT_ROOT)).absolute() / job_name


def spec_sha256(spec: Any) -> str:
    """Hash of the resolved job spec (includes, ``--set`` and ``${VAR}`` applied)."""
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _fields(fields: list[Any]) -> list[list[Any]]:
    return [[f.name, np.dtype(f.dtype).str, list(f.shape)] for f in fields]


def layout_description(job: Any) -> dict[str, Any]:
    """The state layout a job declares: its kernel steps' and keyed rules' fields.

    Shapes are the declared (initial) ones: a row window's length is in it, while the doubling
    of a time window's buffer as the job runs is not.
    """
    out: dict[str, Any] = {"key": job.key, "steps": [], "signals": []}
    for s in job.steps:
        if not s.has_kernel_state:
            continue  # batch steps keep no state
        out["steps"].append({"id": s.step_id, "kernel": s.definition.name,
                             "cross_key": s.is_cross_key,
                             "fields": _fields(s.definition.state(s.params))})
    for name, rule in job.signals.items():
        memory = list(rule.memory)
        if memory:
            out["signals"].append({"name": name, "fields": _fields(memory)})
    streams = job.streams
    if len(streams) > 1:  # a graph: its shape and operators are part of the layout too
        out["streams"] = {name: [s.step_id for s in st.steps] for name, st in streams.items()}
        out["operators"] = [{"id": op.step_id, "operator": op.definition.name,
                             "params": op.params.model_dump_json()} for op in job.operators]
    return out


def layout_sha256(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


HASH_THREADS = 2
"""Files hashed at once: sha256 lets go of the GIL, so a second core halves a large
checkpoint's hashing (under 1 GB/s a core here)."""


def _digests(paths: list[Path]) -> list[str]:
    """The sha256 of every file, the largest first over ``HASH_THREADS`` threads."""
    if len(paths) < 2:
        return [_sha256(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(range(len(paths)), key=lambda i: -paths[i].stat().st_size)
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        done = dict(zip(order, pool.map(lambda i: _sha256(paths[i]), order), strict=True))
    return [done[i] for i in range(len(paths))]


def _file_entries(directory: Path, files: list[Path],
                  known: FileDigests) -> dict[str, list[Any]]:
    """``{relative path: [size, sha256]}`` of ``files``; a digest the backend took as it wrote
    (``known``) is used while the file's identity is still the one it had then, every other
    file is hashed here."""
    entries: dict[str, list[Any]] = {}
    todo: list[Path] = []
    for p in files:
        st = p.stat()
        rel = str(p.relative_to(directory))
        hashed = known.get(rel)
        if hashed is not None and hashed[0] == stat_identity(st):
            entries[rel] = [st.st_size, hashed[1]]
        else:
            entries[rel] = [st.st_size, None]
            todo.append(p)
    for p, digest in zip(todo, _digests(todo), strict=True):
        entries[str(p.relative_to(directory))][1] = digest
    return entries


def _is_log(path: Path) -> bool:
    """RocksDB's info logs and lock file: rewritten when a checkpoint is read, not state."""
    return path.name == "LOCK" or path.name.startswith("LOG")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_keys(path: Path, keys: list[Any]) -> None:
    table = pa.table({"key": pa.array(keys)}) if keys else pa.table(
        {"key": pa.array([], pa.string())})
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def read_keys(path: Path) -> list[Any]:
    try:
        with ipc.open_file(str(path)) as reader:
            return reader.read_all().column("key").to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise StateError(f"{path}: cannot read the key index: {exc}") from None


class CheckpointStore:
    """The checkpoint directories of one job: commit, verify, list, load, prune."""

    def __init__(self, root: Path, keep: int = 3):
        self.root = Path(root)
        self.dir = self.root / "checkpoints"
        self.keep = max(1, keep)
        # a ``checkpoint_process.CheckpointProcess``: commits run in it (a live job's, whose
        # driver must not wait for the GIL while the backend writes)
        self.writer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "writer": None}  # (the copy sent to the writer process)

    def list(self) -> list[tuple[int, Path]]:
        """Committed checkpoint directories (good or not), oldest first."""
        if not self.dir.is_dir():
            return []
        out = [(int(p.name), p) for p in self.dir.iterdir()
               if p.is_dir() and p.name.isdigit()]
        return sorted(out)

    def next_seq(self) -> int:
        entries = self.list()
        return entries[-1][0] + 1 if entries else 1

    def reset(self) -> None:
        """Forget every checkpoint of the job (``--reset-state``)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, backend: StateBackend, snapshot: StateSnapshot, manifest: Manifest,
               extra: Callable[[Path], None] | None = None) -> Path:
        """Write state and keys, then the manifest, then rename the directory into place.

        ``extra(directory)`` may add files first (the live pages of a paged job). With a
        ``writer``, all of it runs in the writer process (``extra`` must then be None or a
        ``CommitFiles``: a paged job's pages are linked here).
        """
        if self.writer is not None and (extra is None or isinstance(extra, CommitFiles)):
            return self.writer.commit(self, backend, snapshot, manifest, extra)
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{manifest.seq:08d}"
        tmp = self.dir / f".{manifest.seq:08d}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            known = backend.write_hashed(tmp, snapshot) or {}
            write_keys(tmp / KEYS_FILE, snapshot.keys)
            if extra is not None:
                extra(tmp)
            manifest.layout = layout_to_json(snapshot.layout())
            manifest.step_rows = snapshot.rows()
            manifest.n_keys = snapshot.n_keys
            manifest.state_bytes = snapshot.nbytes()
            manifest.created = datetime.now(UTC).isoformat(timespec="milliseconds")
            files = [p for p in sorted(tmp.rglob("*")) if p.is_file() and not _is_log(p)]
            manifest.files = _file_entries(tmp, files, known)
            body = json.dumps(asdict(manifest), indent=1, sort_keys=True)
            with (tmp / MANIFEST).open("w") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()
        return final

    def prune(self) -> None:
        """Keep the newest ``keep`` checkpoints; drop older ones and stale temporaries."""
        entries = self.list()
        for _, path in entries[:-self.keep]:
            shutil.rmtree(path, ignore_errors=True)
        for p in self.dir.glob(".*.tmp"):
            if not p.name.endswith(f".{os.getpid()}.tmp"):
                shutil.rmtree(p, ignore_errors=True)

    @staticmethod
    def verify(path: Path) -> Manifest:
        """The checkpoint's manifest, after checking every file's size and sha256.

        Raises:
            StateError: the manifest is missing or unreadable, or a file does not match it.
        """
        try:
            data = json.loads((path / MANIFEST).read_text())
            manifest = Manifest(**data)
        except FileNotFoundError:
            raise StateError(f"checkpoint {path.name}: no manifest (incomplete)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"checkpoint {path.name}: unreadable manifest: {exc}") from None
        if manifest.format not in READS_FORMATS:
            raise StateError(f"checkpoint {path.name}: format {manifest.format}, this tickflow "
                             f"reads formats {READS_FORMATS}")
        for rel, (size, _) in manifest.files.items():
            try:
                actual = (path / rel).stat().st_size
            except OSError:
                raise StateError(f"checkpoint {path.name}: file {rel} is missing") from None
            if actual != size:
                raise StateError(f"checkpoint {path.name}: file {rel} has {actual} bytes, "
                                 f"the manifest says {size} (truncated or rewritten)")
        found = _digests([path / rel for rel in manifest.files])
        for (rel, (_, digest)), actual_digest in zip(manifest.files.items(), found, strict=True):
            if actual_digest != digest:
                raise StateError(f"checkpoint {path.name}: file {rel} does not match its "
                                 f"sha256 (damaged)")
        return manifest

    def load(self, backend: StateBackend, path: Path, manifest: Manifest,
             key_ids: np.ndarray | None = None) -> StateSnapshot:
        """Read a verified checkpoint's keys and state through ``backend``."""
        keys = read_keys(path / KEYS_FILE)
        if len(keys) != manifest.n_keys:
            raise StateError(f"checkpoint {path.name}: {len(keys)} keys stored, the manifest "
                             f"says {manifest.n_keys}")
        layout = manifest.step_layout()
        if key_ids is None:
            return StateSnapshot(keys=keys, steps=backend.read(path, layout, manifest.step_rows))
        return StateSnapshot(keys=keys, steps=read_keys_state(
            backend, path, layout, manifest.step_rows, manifest.n_keys, key_ids))

    def latest_good(self, backend: StateBackend,
                    problems: list[str] | None = None) -> tuple[Manifest, StateSnapshot] | None:
        """The newest checkpoint that verifies and loads; each bad one is noted in ``problems``."""
        for _, path in reversed(self.list()):
            try:
                manifest = self.verify(path)
                if manifest.backend != backend.name:
                    raise StateError(f"checkpoint {path.name} was written by the "
                                     f"{manifest.backend!r} backend, not {backend.name!r}")
                return manifest, self.load(backend, path, manifest)
            except StateError as exc:
                if problems is not None:
                    problems.append(str(exc))
        return None


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start
