"""Checkpoints committed by a process of their own, so that writing one never holds the GIL
of the process that runs the job.

Why: a live job writes each checkpoint on a thread while its driver goes on, but rocksdict
holds the GIL through its calls, disk waits included: while a rocksdb checkpoint was written
(p50 0.5-0.6 s on a loaded 2-core machine) the driver's thread waited for the GIL, and a live
job that checkpointed every 200 ms had tick-to-signal p50 of 0.2-0.3 s (docs/performance.md).
Here the store's ``commit`` (the backend's files, the keys, their hashes, the manifest, the
rename that makes it count) runs in a child process; the job's thread only pickles the
snapshot into a pipe and waits for the answer, both without the GIL.

The child is started once, on first use, and ends with the job: when the job's process dies
(killed), its end of a lifeline pipe closes and the child exits at once, mid-write if need be,
leaving a temporary folder that the next run prunes, as a killed job's own write would.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import struct
import subprocess
import sys
import threading
from typing import Any

from tickflow.engine.errors import StateError

_HEADER = struct.Struct("<Q")
_PIPE_BYTES = 1 << 20  # fewer writes (each takes the GIL back) than the default 64 KiB


class CommitFiles:
    """Files a checkpoint holds besides the backend's (``extra`` of ``CheckpointStore.commit``)
    as data, so that it can go to the writer process: name -> bytes."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def __call__(self, directory: Any) -> None:
        for name, data in self.files.items():
            (directory / name).write_bytes(data)


class CheckpointProcess:
    """A child process that runs ``CheckpointStore.commit`` for this one (one at a time)."""

    _shared: CheckpointProcess | None = None
    _users = 0
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lifeline = -1

    @classmethod
    def shared(cls) -> CheckpointProcess:
        """The process's one writer, started if need be; ``release`` it when done. Live
        runners running side by side in one process (jobs started from Python on threads)
        share it: one child's start-up (about 1 s of CPU importing pyarrow and the backends)
        and 120 MB, not one a job; their commits take turns. A member process's partition
        runners do not use it (``LiveRunner.checkpoint_process``): taking turns slowed them."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            cls._users += 1
            cls._shared.start()
            return cls._shared

    def release(self) -> None:
        """One user of ``shared()`` is done; the last one ends the child."""
        with CheckpointProcess._shared_lock:
            if self is CheckpointProcess._shared:
                CheckpointProcess._users -= 1
                if CheckpointProcess._users > 0:
                    return
                CheckpointProcess._shared = None
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child now (else the first commit does): call it on a thread that is not
        on a tick's path, or where a few milliseconds do not matter."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._end()  # one that died between commits is replaced
        read, self._lifeline = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tickflow.engine.checkpoint_process", str(read)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(read,),
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        finally:
            os.close(read)
        size = getattr(fcntl, "F_SETPIPE_SZ", None)  # (Linux)
        for pipe in (self._proc.stdin, self._proc.stdout) if size is not None else ():
            with contextlib.suppress(OSError):  # a smaller pipe only costs more writes
                fcntl.fcntl(pipe.fileno(), size, _PIPE_BYTES)

    def commit(self, store: Any, backend: Any, snapshot: Any, manifest: Any,
               extra: CommitFiles | None) -> Any:
        """``store.commit(...)`` in the child; its path (or the child's error, raised here).
        A child that ended before answering is replaced and asked once more (its temporary
        folder is pruned by the next commit); a second end is raised."""
        body = pickle.dumps((store, backend, snapshot, manifest, extra), protocol=5)
        with self._lock:
            for attempt in (1, 2):
                self._start()
                proc = self._proc
                assert proc is not None and proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(_HEADER.pack(len(body)))
                    proc.stdin.write(body)
                    proc.stdin.flush()
                    ok, answer, written = _read_message(proc.stdout)
                    break
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    self._end()
                    if attempt == 2:
                        raise StateError(f"checkpoint {manifest.seq}: the writer process "
                                         f"ended ({type(exc).__name__}: {exc}; exit code "
                                         f"{proc.returncode})") from None
            if not ok:
                raise answer
            for name, value in written.items():  # what the child's commit set on it
                setattr(manifest, name, value)
            return answer

    def close(self) -> None:
        """End the child (it finishes nothing: call between commits)."""
        with self._lock:
            self._end()

    def _end(self) -> None:
        proc, self._proc = self._proc, None
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read_message(stream: Any) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("no answer")
    (size,) = _HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("a cut answer")
    return pickle.loads(body)


def _watch(lifeline: int) -> None:
    """Exit as soon as the job's process is gone (its end of the lifeline closes)."""
    while os.read(lifeline, 1):
        pass
    os._exit(3)


def main(lifeline: int) -> None:
    """The child: commit each checkpoint sent on stdin, answer (ok, path or error, the
    manifest's fields) on stdout."""
    threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    # imported now, while the job starts, not by its first checkpoint (about 1 s)
    import importlib

    importlib.import_module("tickflow.engine.checkpoint")
    with contextlib.suppress(ImportError):
        importlib.import_module("tickflow.engine.state.rocksdb")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answers' pipe
    while True:
        try:
            store, backend, snapshot, manifest, extra = _read_message(stdin)
        except EOFError:
            return
        try:
            path = store.commit(backend, snapshot, manifest, extra)
            answer = (True, path, vars(manifest))
        except BaseException as exc:  # told to the job, which raises it
            error = exc if isinstance(exc, StateError) else StateError(
                f"checkpoint {manifest.seq}: {type(exc).__name__}: {exc}")
            answer = (False, error, {})
        body = pickle.dumps(answer, protocol=5)
        stdout.write(_HEADER.pack(len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]))
