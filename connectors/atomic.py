"""Publishing a finished output file in one step, without a rename over the previous output.

``os.replace(new, path)`` is atomic, but when ``path`` already exists ext4 first writes out the
new file's delayed blocks (its ``auto_da_alloc`` heuristic, made for editors that do not
fsync): about 1 s for a 1.5 GB output, on the critical path of every re-run. An atomic
*exchange* of the two names (Linux ``renameat2(RENAME_EXCHANGE)``) has no such heuristic: the
path switches from the old file to the new one in one step, and the old file, now under the
temporary name, is deleted after. A reader opening ``path`` sees the old output or the new one,
whole, never a missing or partial file; a crash between the two steps leaves the new output in
place and the old one under the hidden temporary name.

Deleting a large file takes time too (0.2-0.8 s for 2 GB on ext4: the file system frees every
extent). So a previous output of ``DETACHED_DELETE_BYTES`` or more is deleted by an ``rm`` in a
session of its own: the caller (and ``run-job``) returns at once, and the delete finishes even
if this process exits or is killed first. A smaller one, or when ``rm`` cannot start, is
deleted here.

Elsewhere (other systems, file systems without exchange, no previous output) this is
``os.replace``.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2: object = None  # resolved on first use: False when unavailable

DETACHED_DELETE_BYTES = 64 << 20
"""A previous output this large is deleted by a detached process (smaller ones take ~ms)."""


def publish(tmp: str | Path, path: str | Path) -> None:
    """Move the finished file ``tmp`` to ``path``, replacing any previous file there.

    Raises:
        OSError: neither the exchange nor the rename could be done.
    """
    size = _file_size(path)
    if size is not None and _exchange(os.fsencode(tmp), os.fsencode(path)):
        # the previous output, now under the temp name
        if size < DETACHED_DELETE_BYTES or not delete_detached(Path(tmp)):
            Path(tmp).unlink(missing_ok=True)
        return
    os.replace(tmp, path)


def delete_detached(path: Path, *, tree: bool = False) -> bool:
    """Start deleting ``path`` (a directory and all below it when ``tree``) in a process of
    its own session; False when it cannot start.

    The process outlives this one if need be (a new session: no terminal signal reaches it);
    a daemon thread reaps it when this process lives longer.
    """
    try:
        proc = subprocess.Popen(["rm", "-rf" if tree else "-f", "--", os.fspath(path)],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError:
        return False
    threading.Thread(target=proc.wait, name="tickflow-delete-previous-output",
                     daemon=True).start()
    return True


def _file_size(path: str | Path) -> int | None:
    """The size of a regular file; None for anything else (a directory or link, which
    ``os.replace`` handles or rejects) or nothing."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _exchange(tmp: bytes, path: bytes) -> bool:
    """Swap two existing names atomically; False when that cannot be done here."""
    fn = _load_renameat2()
    if fn is None:
        return False
    import ctypes

    if fn(_AT_FDCWD, tmp, _AT_FDCWD, path, _RENAME_EXCHANGE) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # no previous output, or a file system / kernel without exchange
    raise OSError(err, os.strerror(err), os.fsdecode(path))


def _load_renameat2() -> object:
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
            except (AttributeError, OSError):
                pass
            else:
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
    return _renameat2 or None
