"""Temporary files named after the process that owns them, and the removal of dead ones.

Why: a writer killed by SIGKILL (or the OOM killer) never reaches its cleanup, and its
temporary file (a whole run's output, hundreds of MB) stays beside the target forever. Every
temporary file carries its owner's pid (``.NAME.<pid>.<random>.tmp``), so the next writer of
the same target can tell the leftovers of dead processes from a live writer's file, and delete
only those.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def temp_path(target: Path) -> Path:
    """A hidden temporary path beside ``target``, owned by this process."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temp_files(target: Path) -> list[Path]:
    """Delete the temporary files of ``target`` whose owning process is gone; those deleted."""
    removed = []
    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            name = path.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid_text = name[len(prefix):-len(".tmp")].partition(".")[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid() or \
                    _pid_is_alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
