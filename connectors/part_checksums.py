"""Row count and sha256 of each finished output part, recorded when it is committed.

Why: a part truncated or rewritten after its commit (a full disk, a copy gone wrong) was found
only at the final merge, far from its cause, or not at all when the damage kept the footer.
The checkpoint records each part's rows and digest; a resume and the merge check them first
and name the part that does not match.

A Dask part lives only from its task's end to the run's commit (seconds), so it is checked by
its file identity instead (:func:`part_identity`): hashing it in the task and again at the
commit read each output twice, the second time on one worker at the end of the run (1.1
CPU-s and 3-8 s of wall for a 1.6 GB output), where no other worker can help.

The same holds for a checkpointed run's parts at its final merge: a part this process wrote
(and hashed as it went out) or verified on resume is trusted at the merge while its
:func:`~tickflow.engine.file_identity.stat_identity` is still the one taken right after; any
other part is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.engine.errors import SinkError
from tickflow.engine.file_identity import Identity, sha256_held_still


def part_digest(path: Path) -> list[object]:
    """``[rows, sha256]`` of a finished Parquet part."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return [pq.ParquetFile(path).metadata.num_rows, digest.hexdigest()]


def verify_part(path: Path, expected: list[object], what: str, *,
                since: str = "its checkpoint", remedy: str = "run with --reset-state"
                ) -> Identity | None:
    """SinkError naming ``path`` when it is missing, unreadable or differs from ``expected``.

    Returns the file's identity when it held still while it was read (the same before and
    after), else None: what the merge may trust without reading the part again.
    """
    try:
        with path.open("rb") as fh:
            digest, held = sha256_held_still(fh)
        actual = [pq.ParquetFile(path).metadata.num_rows, digest]
    except (OSError, pa.ArrowException) as exc:
        raise SinkError(f"{what}: committed part {path} cannot be read ({exc}); "
                        f"{remedy}") from None
    if actual[1] != expected[1]:
        raise SinkError(f"{what}: committed part {path} has changed since {since} "
                        f"({actual[0]:,} rows, {expected[0]:,} recorded; "
                        f"sha256 differs): truncated or rewritten; {remedy}")
    return held


def part_identity(path: Path, rows: int) -> list[object]:
    """``[rows, "inode:size:mtime_ns:ctime_ns"]`` of a finished part, read from its inode.

    Any write, truncation or replacement of the file changes its size, inode or times, and
    resetting the times (``os.utime``) still changes ``ctime``; so the identity recorded when
    the task finished tells whether the commit publishes exactly that file, without reading it.
    """
    st = os.stat(path)
    return [rows, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"]


def verify_identity(path: Path, expected: list[object], what: str, *, since: str,
                    remedy: str) -> None:
    """SinkError naming ``path`` when it is missing or is no longer the file ``expected``."""
    try:
        actual = part_identity(path, int(str(expected[0])))
    except OSError as exc:
        raise SinkError(f"{what}: part {path} cannot be read ({exc}); {remedy}") from None
    if actual[1] != expected[1]:
        raise SinkError(f"{what}: part {path} has changed since {since} (its size, inode or "
                        f"times differ from what its task recorded): truncated or rewritten; "
                        f"{remedy}")
