"""Row count and sha256 of each finished output part, recorded when it is committed.

Why: a part truncated or rewritten after its commit (a full disk, a copy gone wrong) was found
only at the final merge, far from its cause, or not at all when the damage kept the footer.
The checkpoint records each part's rows and digest; a resume and the merge check them first
and name the part that does not match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.engine.errors import SinkError


def part_digest(path: Path) -> list[object]:
    """``[rows, sha256]`` of a finished Parquet part."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return [pq.ParquetFile(path).metadata.num_rows, digest.hexdigest()]


def verify_part(path: Path, expected: list[object], what: str, *,
                since: str = "its checkpoint", remedy: str = "run with --reset-state") -> None:
    """SinkError naming ``path`` when it is missing, unreadable or differs from ``expected``."""
    try:
        actual = part_digest(path)
    except (OSError, pa.ArrowException) as exc:
        raise SinkError(f"{what}: committed part {path} cannot be read ({exc}); "
                        f"{remedy}") from None
    if actual[1] != expected[1]:
        raise SinkError(f"{what}: committed part {path} has changed since {since} "
                        f"({actual[0]:,} rows, {expected[0]:,} recorded; "
                        f"sha256 differs): truncated or rewritten; {remedy}")
