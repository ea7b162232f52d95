"""One job per state folder: an exclusive lock, held for the life of the process.

Why: two jobs on one state folder each resume from the other's checkpoints and delete each
other's temporary checkpoint directories; the second one crashes in the middle of a commit
(``Directory not empty``) and the first one's state can no longer be trusted. The lock is a
``LOCK`` file in the folder holding the owner's pid, host and start time, locked with
``flock``: the kernel releases it when the owner dies however it dies (SIGKILL included), so a
stale lock left by a dead process is simply taken over, and the file is rewritten with the new
owner. A second job is refused with a message naming the process that holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from tickflow.engine.errors import StateError

LOCK_FILE = "LOCK"
_HELD: dict[Path, int] = {}  # lock file -> open descriptor; a process may reopen its own folder


def pid_is_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def acquire_state_lock(folder: Path) -> Path:
    """Lock ``folder`` for this process (re-entrant within it); the lock file's path.

    Raises:
        StateError: another live process holds the folder (named with its pid, host, start
            time and command), or the folder cannot be created or locked.
    """
    folder = Path(folder)
    path = (folder / LOCK_FILE).absolute()
    if path in _HELD:
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"state folder {folder}: cannot create its lock file: "
                         f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _describe(_read(fd))
        os.close(fd)
        raise StateError(f"state folder {folder} is in use by another job ({holder}); stop "
                         f"that job first, or give this one its own state.path") from None
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.now(UTC).isoformat(timespec="seconds"),
             "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
    _HELD[path] = fd
    return path


def release_state_lock(folder: Path) -> None:
    """Give the folder up before the process ends (tests, long-lived hosts)."""
    fd = _HELD.pop((Path(folder) / LOCK_FILE).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def read_lock_owner(folder: Path) -> dict[str, object]:
    """What the lock file of ``folder`` says about its last owner ({} when none)."""
    try:
        return json.loads((Path(folder) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _read(fd: int) -> dict[str, object]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(owner: dict[str, object]) -> str:
    if not owner:
        return "a process that has not written its name yet"
    text = f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"
    return text + (f": {owner['command']}" if owner.get("command") else "")
