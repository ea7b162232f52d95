"""Publishing an output: readers and crashes see the old file or the new one, whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.atomic import publish
from tickflow.connectors.parquet import AtomicParquetWriter

ROWS = 200_000


def _write_version(path: Path, version: int) -> None:
    """A whole-file output whose every value says which version wrote it."""
    table = pa.table({"v": pa.array([version] * ROWS, pa.int64())})
    w = AtomicParquetWriter(path, table.schema, row_group_rows=50_000)
    w.write(table.to_batches()[0])
    w.close()


def _version(path: Path) -> int:
    # one open: a reader that reopens the path (footer, then pages) may mix two outputs
    with path.open("rb") as fh:
        values = pq.read_table(fh).column("v")
    assert len(values) == ROWS, f"partial file: {len(values)} rows"
    low, high = values.combine_chunks().to_numpy()[[0, -1]]
    assert low == high
    return int(low)


def test_a_reader_always_finds_a_whole_output_while_it_is_replaced(tmp_path):
    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    seen: list[int] = []
    problems: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(_version(out))
            except BaseException as exc:  # a missing or partial file
                problems.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 16):
            _write_version(out, version)
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert len(seen) > 1
    assert seen == sorted(seen)  # never an older output after a newer one
    assert _version(out) == 15
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temp file left behind


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import tests.connectors.test_publish as t
    out = Path(sys.argv[1])
    if sys.argv[2] == "die-before-cleanup":  # a crash right after the new file took the path
        import os, pathlib
        pathlib.Path.unlink = lambda self, missing_ok=False: os._exit(9)
        t._write_version(out, 1)
    else:
        for version in range(1, 1_000_000):
            t._write_version(out, version)
            print(version, flush=True)
""")


def _child(out: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(out), mode], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_a_crash_after_the_swap_leaves_the_new_output_and_the_old_one_aside(tmp_path):
    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    with _child(out, "die-before-cleanup") as child:
        assert child.wait(timeout=120) == 9
    assert _version(out) == 1
    leftovers = [p for p in tmp_path.iterdir() if p != out]
    if leftovers:  # renameat2 exchange: the previous output, whole, under the temp name
        assert len(leftovers) == 1
        assert leftovers[0].name.startswith(".out.parquet.")
        assert _version(leftovers[0]) == 0


@pytest.mark.parametrize("after_s", [0.3, 0.7, 1.1])
def test_a_kill_at_any_moment_leaves_the_old_or_the_new_output(tmp_path, after_s):
    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    with _child(out, "loop") as child:
        assert child.stdout is not None
        first = child.stdout.readline()  # the child is writing versions
        assert first.strip() == "1"
        time.sleep(after_s)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        published = [int(v) for v in [first, *child.stdout.read().split()]]
    # the file holds the last version reported, or the one being published when killed
    assert _version(out) in (published[-1], published[-1] + 1)


def test_publishing_onto_a_directory_fails_and_leaves_it(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    (tmp_path / "new").write_text("y")
    with pytest.raises(OSError):
        publish(tmp_path / "new", tmp_path / "out")
    assert (tmp_path / "out" / "keep").read_text() == "x"


def test_publishing_without_a_previous_output(tmp_path):
    (tmp_path / "new").write_text("y")
    publish(tmp_path / "new", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "y"
    assert not (tmp_path / "new").exists()


def _wait_gone(path: Path, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_large_previous_output_is_deleted_by_another_process(tmp_path, monkeypatch):
    import tickflow.connectors.atomic as atomic

    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    old_inode = out.stat().st_ino
    monkeypatch.setattr(atomic, "DETACHED_DELETE_BYTES", 1)  # every previous output is "large"
    unlinked: list[Path] = []
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: unlinked.append(self))
    _write_version(out, 1)
    assert _version(out) == 1
    assert unlinked == []  # not deleted in this process
    leftovers = [p for p in tmp_path.iterdir() if p != out]
    assert all(_wait_gone(p) for p in leftovers), "the detached delete never happened"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    assert out.stat().st_ino != old_inode


_DETACHED_CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import tickflow.connectors.atomic as atomic
    import tests.connectors.test_publish as t
    atomic.DETACHED_DELETE_BYTES = 1
    t._write_version(Path(sys.argv[1]), 1)
    os.kill(os.getpid(), 9)  # dies at once: the delete is not this process's to finish
""")


def test_the_detached_delete_finishes_after_the_writer_is_killed(tmp_path):
    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", _DETACHED_CHILD, str(out)], env=env,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert _version(out) == 1
    for leftover in [p for p in tmp_path.iterdir() if p != out]:
        assert _wait_gone(leftover), f"{leftover.name} was left behind"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_a_small_previous_output_is_deleted_before_publish_returns(tmp_path):
    out = tmp_path / "out.parquet"
    _write_version(out, 0)
    _write_version(out, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def _stage_parts(target: Path, run_id: str, version: int, parts: int = 2) -> dict[int, list]:
    from tickflow.connectors.parquet_parts import PART_NAME, PartitionPart, staging_dir

    digests = {}
    for k in range(parts):
        part = PartitionPart(staging_dir(target, run_id) / PART_NAME.format(k),
                             {"row_group_rows": 50_000}, {})
        table = pa.table({"v": pa.array([version] * ROWS, pa.int64())})
        part.open(table.schema)
        part.write(table.to_batches()[0])
        part.close()
        digests[k] = part.digest()
    return digests


def test_a_large_replaced_partitioned_output_is_deleted_by_another_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tickflow.connectors.parquet_parts as parts_module

    target = tmp_path / "out.parquet"
    parts_module.commit_partition_parts(target, "run0", 2, _stage_parts(target, "run0", 0))
    monkeypatch.setattr(parts_module, "DETACHED_DELETE_BYTES", 1)  # every previous one is large
    removed: list[Path] = []
    monkeypatch.setattr(parts_module.shutil, "rmtree",
                        lambda path, ignore_errors=False: removed.append(Path(path)))
    files = parts_module.commit_partition_parts(target, "run1", 2,
                                                _stage_parts(target, "run1", 1))
    assert [Path(f).name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    assert all(_version(Path(f)) == 1 for f in files)
    assert removed == []  # not deleted in this process
    leftovers = [p for p in tmp_path.iterdir() if p != target]  # gone already, or soon
    assert all(p.name == ".out.parquet.old-run1" for p in leftovers)
    assert all(_wait_gone(p) for p in leftovers), "the detached delete never happened"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # by another process
