"""Committed output parts carry their row count and sha256; a part changed after its commit is
named on resume and at the merge, on real files."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from tickflow.connectors.parquet import PartFiles
from tickflow.engine.errors import SinkError


def _parts(tmp_path) -> tuple[PartFiles, dict]:
    parts = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                      statistics=False)
    parts.seek(None)
    position: dict = {}
    for k in range(3):
        parts.write(pa.record_batch({"x": pa.array(range(k * 500, k * 500 + 500))}))
        position = parts.commit()
    return parts, position


def test_commit_records_rows_and_sha256_and_a_clean_resume_merges(tmp_path):
    _, position = _parts(tmp_path)
    assert position["parts"] == 3 and [d[0] for d in position["digests"]] == [500] * 3
    again = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                      statistics=False)
    again.seek(position)
    again.schema = pa.schema([("x", pa.int64())])
    out = again.merge({})
    out.close()
    assert out.rows == 1500


@pytest.mark.parametrize("damage", ["truncate", "rewrite"])
def test_a_part_changed_after_its_commit_is_named(tmp_path, damage):
    parts, position = _parts(tmp_path)
    victim = parts._part(1)
    if damage == "truncate":
        os.truncate(victim, victim.stat().st_size // 2)
    else:
        data = bytearray(victim.read_bytes())
        data[10] ^= 0xFF
        victim.write_bytes(bytes(data))
    resumed = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                        statistics=False)
    with pytest.raises(SinkError, match=r"part-000001\.parquet"):
        resumed.seek(position)
    parts.schema = pa.schema([("x", pa.int64())])
    with pytest.raises(SinkError, match=r"part-000001\.parquet"):
        parts.merge({})
    assert not (tmp_path / "out.parquet").exists()


class _CountingSha256:
    """Stands in for ``hashlib`` in ``parquet_concat``: counts the parts the join hashes."""

    def __init__(self):
        import hashlib

        self.calls = 0
        self._sha256 = hashlib.sha256

    def sha256(self, *args):
        self.calls += 1
        return self._sha256(*args)


def _counting(monkeypatch) -> _CountingSha256:
    from tickflow.connectors import parquet_concat

    counter = _CountingSha256()
    monkeypatch.setattr(parquet_concat, "hashlib", counter)
    return counter


def _same_size_rewrite(victim, keep_times: bool) -> None:
    """Flip one byte in place: same size, same inode; with ``keep_times`` the old mtime is put
    back (``os.utime``), so only ``ctime`` tells."""
    st = victim.stat()
    with victim.open("r+b") as fh:
        fh.seek(10)
        byte = fh.read(1)
        fh.seek(10)
        fh.write(bytes([byte[0] ^ 0xFF]))
    if keep_times:
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_ino == st.st_ino


def test_the_merge_does_not_hash_again_the_parts_this_run_wrote(tmp_path, monkeypatch):
    parts, _ = _parts(tmp_path)
    parts.schema = pa.schema([("x", pa.int64())])
    counter = _counting(monkeypatch)
    out = parts.merge({})
    out.close()
    assert counter.calls == 0 and out.rows == 1500


@pytest.mark.parametrize("damage", ["in place", "times put back", "swapped"])
def test_a_part_changed_between_its_write_and_the_merge_is_hashed_and_named(tmp_path,
                                                                            monkeypatch, damage):
    parts, _ = _parts(tmp_path)
    victim = parts._part(1)
    if damage == "swapped":  # another valid part put in its place (a new inode)
        other = PartFiles(str(tmp_path / "other.parquet"), compression="lz4",
                          row_group_rows=1024, statistics=False)
        other.seek(None)
        other.write(pa.record_batch({"x": pa.array(range(9500, 10000))}))
        other.commit()
        os.replace(other._part(0), victim)
    else:
        _same_size_rewrite(victim, keep_times=damage == "times put back")
    parts.schema = pa.schema([("x", pa.int64())])
    counter = _counting(monkeypatch)
    with pytest.raises(SinkError, match=r"part-000001\.parquet.*changed"):
        parts.merge({})
    assert counter.calls == 1  # the changed part only, in the join (then named by verify_part)
    assert not (tmp_path / "out.parquet").exists()


def test_after_a_restart_parts_verified_on_resume_are_trusted_until_they_change(tmp_path,
                                                                               monkeypatch):
    _, position = _parts(tmp_path)

    def resumed() -> PartFiles:
        again = PartFiles(str(tmp_path / "out.parquet"), compression="lz4",
                          row_group_rows=1024, statistics=False)
        again.seek(position)  # hashes every committed part against the checkpoint
        again.schema = pa.schema([("x", pa.int64())])
        return again

    counter = _counting(monkeypatch)
    again = resumed()
    _same_size_rewrite(again._part(2), keep_times=True)  # after the resume's check
    with pytest.raises(SinkError, match=r"part-000002\.parquet.*changed"):
        again.merge({})
    assert counter.calls == 1
    # a restart now names it at once, before any row is processed
    with pytest.raises(SinkError, match=r"part-000002\.parquet.*changed"):
        resumed()
    _same_size_rewrite(again._part(2), keep_times=True)  # the byte back: the part is whole
    counter.calls = 0
    out = resumed().merge({})
    out.close()
    assert counter.calls == 0 and out.rows == 1500


def _one_part(tmp_path, metadata: dict[str, str]) -> tuple[PartFiles, dict]:
    parts = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                      statistics=False, metadata=metadata)
    parts.seek(None)
    parts.write(pa.record_batch({"x": pa.array(range(700))}))
    position = parts.commit()
    parts.schema = pa.schema([("x", pa.int64())])
    return parts, position


def test_one_part_becomes_the_output_without_a_copy(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    meta = {"tickflow.job_name": "one"}
    parts, _ = _one_part(tmp_path, meta)
    counter = _counting(monkeypatch)
    out = parts.merge(meta)
    out.close()
    target = tmp_path / "out.parquet"
    assert target.stat().st_ino == parts._part(0).stat().st_ino  # the part itself, linked
    assert counter.calls == 0 and out.rows == 700 and out.row_groups == 1
    parts.remove()  # the run's release: the output stays
    assert pq.read_table(target).column("x").to_pylist() == list(range(700))
    assert pq.read_metadata(target).metadata[b"tickflow.job_name"] == b"one"


def test_one_part_changed_before_the_merge_is_named_and_not_published(tmp_path):
    meta = {"tickflow.job_name": "one"}
    parts, _ = _one_part(tmp_path, meta)
    _same_size_rewrite(parts._part(0), keep_times=True)
    with pytest.raises(SinkError, match=r"part-000000\.parquet.*changed"):
        parts.merge(meta)
    assert not (tmp_path / "out.parquet").exists()


def test_one_part_of_other_metadata_is_joined_under_the_outputs_footer(tmp_path):
    """A part from a run whose provenance differs (the job file changed before a resume)."""
    import pyarrow.parquet as pq

    parts, position = _one_part(tmp_path, {"tickflow.job_name": "before"})
    resumed = PartFiles(str(tmp_path / "out.parquet"), compression="lz4", row_group_rows=1024,
                        statistics=False, metadata={"tickflow.job_name": "after"})
    resumed.seek(position)
    resumed.schema = pa.schema([("x", pa.int64())])
    out = resumed.merge({"tickflow.job_name": "after"})
    out.close()
    target = tmp_path / "out.parquet"
    assert target.stat().st_ino != parts._part(0).stat().st_ino
    assert pq.read_metadata(target).metadata[b"tickflow.job_name"] == b"after"
    assert pq.read_table(target).column("x").to_pylist() == list(range(700))
