"""A file's identity, to trust a sha256 taken earlier in the same run without reading again.

A checkpointed run hashes its output parts as it writes them, and a RocksDB checkpoint's files
as they are ingested; the final merge and the manifest take those digests while the file's
identity is unchanged, and hash any other file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

Identity = tuple[int, int, int, int, int]
"""``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of a file."""


def stat_identity(st: os.stat_result) -> Identity:
    """The identity of a file as ``stat`` saw it.

    Writing, truncating or replacing the file changes one of these, and so does resetting its
    times (``os.utime`` sets ``ctime`` to now). Linux 6.13 and later give a change made right
    after a ``stat`` a fine-grained time; on older kernels a change of the same size made within
    the same clock tick (1-4 ms) as the ``stat`` keeps the identity.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_identity(path: Path) -> Identity:
    return stat_identity(os.stat(path))


def sha256_held_still(fh: BinaryIO) -> tuple[str, Identity | None]:
    """The sha256 of an open file from its start, and its identity when it held still while it
    was read (the same before and after), else None."""
    before = stat_identity(os.fstat(fh.fileno()))
    digest = hashlib.file_digest(fh, "sha256").hexdigest()
    after = stat_identity(os.fstat(fh.fileno()))
    return digest, before if before == after else None
