"""Checkpoints committed by a writer process (engine/checkpoint_process.py): the same checkpoint
as one committed here, written by another process, its errors raised here, and the writer gone
with the job's process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tickflow.engine.checkpoint import CheckpointStore, Manifest
from tickflow.engine.checkpoint_process import CheckpointProcess, CommitFiles
from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import StateSnapshot, get_backend

pytest.importorskip("rocksdict")


def _snapshot(n_keys: int, seed: int) -> StateSnapshot:
    rng = np.random.default_rng(seed)
    return StateSnapshot(keys=[f"K{i}" for i in range(n_keys)], steps={
        "sma": {"sum": rng.normal(size=n_keys), "count": rng.integers(0, 9, n_keys)},
        "window": {"ring": rng.normal(size=(n_keys, 16))}})


def _manifest(seq: int) -> Manifest:
    return Manifest(seq=seq, job_name="j", spec_sha256="s", layout_sha256="l",
                    backend="rocksdb", n_keys=0, rows=0, batches=0, sources=[], sinks=[])


def _commit_in(store: CheckpointStore, writer: CheckpointProcess | None, seq: int,
               snapshot: StateSnapshot) -> tuple[Path, Manifest]:
    store.writer = writer
    manifest = _manifest(seq)
    path = store.commit(get_backend("rocksdb"), snapshot, manifest,
                        CommitFiles({"graph_nodes.pickle": b"nodes"}))
    return Path(path), manifest


def test_the_writer_commits_the_same_checkpoint(tmp_path: Path) -> None:
    backend, snapshot = get_backend("rocksdb"), _snapshot(50, 1)
    writer = CheckpointProcess()
    try:
        there, m_there = _commit_in(CheckpointStore(tmp_path / "a"), writer, 1, snapshot)
        assert writer.pid is not None and writer.pid != os.getpid()
    finally:
        writer.close()
    _, m_here = _commit_in(CheckpointStore(tmp_path / "b"), None, 1, snapshot)
    # the manifest the writer filled in came back, and says what a local commit says
    assert m_there.n_keys == m_here.n_keys == 50 and m_there.files and m_there.created
    assert m_there.layout == m_here.layout and m_there.step_rows == m_here.step_rows
    assert (there / "graph_nodes.pickle").read_bytes() == b"nodes"
    verified = CheckpointStore.verify(there)  # every file's size and sha256
    loaded = CheckpointStore(tmp_path / "a").load(backend, there, verified)
    for sid, fields in snapshot.steps.items():
        for name, arr in fields.items():
            np.testing.assert_array_equal(loaded.steps[sid][name], arr)
    assert loaded.keys == snapshot.keys


class _DiesWhenRead:
    """Unpickled in the writer, it ends the writer's process there (a crash mid-commit)."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os._exit, (7,))


def test_errors_are_raised_here_and_a_dead_writer_is_replaced(tmp_path: Path) -> None:
    writer = CheckpointProcess()
    try:
        (tmp_path / "file").write_text("not a folder")
        with pytest.raises(StateError, match="checkpoint 1"):  # the child's error, here
            _commit_in(CheckpointStore(tmp_path / "file"), writer, 1, _snapshot(3, 2))
        crashing = _snapshot(3, 2)
        crashing.keys.append(_DiesWhenRead())
        with pytest.raises(StateError, match=r"writer process ended.*exit code 7"):
            _commit_in(CheckpointStore(tmp_path / "s"), writer, 2, crashing)
        assert writer.pid is None
        path, _ = _commit_in(CheckpointStore(tmp_path / "s"), writer, 3, _snapshot(3, 2))
        first = writer.pid
        os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]  # between two commits
        path, _ = _commit_in(CheckpointStore(tmp_path / "s"), writer, 4, _snapshot(3, 2))
        assert writer.pid != first and CheckpointStore.verify(path).seq == 4
        assert not _alive(first)  # type: ignore[arg-type]
    finally:
        writer.close()
    assert writer.pid is None


def test_the_writer_ends_with_the_jobs_process(tmp_path: Path) -> None:
    """A killed job leaves no writer behind to finish (or start) a checkpoint later."""
    code = ("from tickflow.engine.checkpoint_process import CheckpointProcess\n"
            "import os, sys, time\n"
            "w = CheckpointProcess(); w.start(); print(w.pid, flush=True)\n"
            "time.sleep(60)\n")
    job = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    child = int(job.stdout.readline())  # type: ignore[union-attr]
    assert _alive(child)
    job.kill()
    job.wait()
    job.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_runners_share_one_writer_until_the_last_releases_it() -> None:
    a, b = CheckpointProcess.shared(), CheckpointProcess.shared()
    assert a is b and a.pid is not None
    pid = a.pid
    a.release()
    assert b.pid == pid and _alive(pid)  # still in use
    b.release()
    assert b.pid is None and not _alive(pid)
    c = CheckpointProcess.shared()
    try:
        assert c is not a and c.pid != pid
    finally:
        c.release()
