"""One contract for every state backend (memory, rocksdb, tiledb) on real files under tmp_path.

What a backend stores must come back bit for bit: every field's dtype and per-key shape, ring
buffers, a cross-key step's single row, any subset of keys, and a damaged file must surface as a
StateError (never as garbage state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tickflow.engine.checkpoint import CheckpointStore, Manifest
from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import StateSnapshot, get_backend

SUPPORTED_BACKENDS = ["memory", "rocksdb", "tiledb"]
ON_DISK = ["rocksdb", "tiledb"]


def make_snapshot(n_keys: int, seed: int = 0) -> StateSnapshot:
    rng = np.random.default_rng(seed)
    keys = [f"SYM{i:05d}-USD" for i in range(n_keys)]
    ring = rng.standard_normal((n_keys, 16))
    ring[::3, 5] = np.nan
    return StateSnapshot(keys=keys, steps={
        "ewma": {"m": rng.standard_normal(n_keys)},
        "zscore_fast": {"vals": ring,
                        "ring_ts": rng.integers(0, 2**62, (n_keys, 16), dtype=np.int64),
                        "ring_head": rng.integers(0, 16, n_keys, dtype=np.int64),
                        "ring_count": rng.integers(0, 17, n_keys, dtype=np.int64),
                        "grid": rng.standard_normal((n_keys, 2, 3)),
                        "flag": rng.integers(0, 2, n_keys, dtype=np.int8)},
        "spread_ab": {"beta": rng.standard_normal(1)},  # a cross-key step: one group row
        "signal.cross": {"prev0": rng.standard_normal((n_keys, 1))},
    })


def assert_same(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> None:
    assert a.keys() == b.keys()
    for sid in a:
        assert a[sid].keys() == b[sid].keys(), sid
        for name in a[sid]:
            x, y = a[sid][name], b[sid][name]
            assert x.dtype == y.dtype, (sid, name)
            assert x.shape == y.shape, (sid, name)
            np.testing.assert_array_equal(x, y, err_msg=f"{sid}.{name}")


@pytest.mark.parametrize("name", SUPPORTED_BACKENDS)
@pytest.mark.parametrize("n_keys", [1, 37, 5_000])
def test_write_then_read_returns_every_field_exactly(name: str, n_keys: int,
                                                     tmp_path: Path) -> None:
    backend = get_backend(name)
    snap = make_snapshot(n_keys)
    directory = tmp_path / "ckpt"
    directory.mkdir()
    backend.write(directory, snap)
    back = backend.read(directory, snap.layout(), snap.rows())
    assert_same(snap.steps, back)


@pytest.mark.parametrize("name", SUPPORTED_BACKENDS)
def test_a_subset_of_keys_reads_only_those_keys_in_the_order_asked(name: str,
                                                                   tmp_path: Path) -> None:
    backend = get_backend(name)
    snap = make_snapshot(1_000, seed=3)
    backend.write(tmp_path, snap)
    ids = np.array([999, 0, 512, 513])
    per_key = {sid: f for sid, f in snap.layout().items() if snap.rows()[sid] == 1_000}
    back = backend.read(tmp_path, per_key, snap.rows(), ids)
    assert_same({sid: {k: v[ids] for k, v in snap.steps[sid].items()} for sid in per_key}, back)


@pytest.mark.parametrize("name", SUPPORTED_BACKENDS)
def test_reading_an_unknown_key_id_is_a_state_error(name: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    snap = make_snapshot(10)
    backend.write(tmp_path, snap)
    with pytest.raises(StateError, match="out of range"):
        backend.read(tmp_path, {"ewma": snap.layout()["ewma"]}, snap.rows(), np.array([10]))


@pytest.mark.parametrize("name", ON_DISK)
def test_on_disk_backends_write_files_and_memory_writes_none(name: str, tmp_path: Path) -> None:
    get_backend(name).write(_mkdir(tmp_path / "disk"), make_snapshot(50))
    assert any(p.is_file() for p in (tmp_path / "disk").rglob("*"))
    get_backend("memory").write(_mkdir(tmp_path / "mem"), make_snapshot(50))
    assert not any((tmp_path / "mem").iterdir())
    assert not get_backend("memory").is_persistent and get_backend(name).is_persistent


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.mark.parametrize("name", ON_DISK)
def test_a_missing_step_is_a_state_error(name: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    snap = make_snapshot(20)
    backend.write(tmp_path, snap)
    layout = snap.layout()
    layout["not_written"] = layout["ewma"]
    rows = {**snap.rows(), "not_written": 20}
    with pytest.raises(StateError):
        backend.read(tmp_path, layout, rows)


def _manifest(seq: int, backend: str) -> Manifest:
    return Manifest(seq=seq, job_name="t", spec_sha256="s", layout_sha256="l", backend=backend,
                    n_keys=0, rows=seq * 100, batches=seq, sources=[{"row": seq}], sinks=[])


@pytest.mark.parametrize("name", ON_DISK)
def test_checkpoints_commit_atomically_and_keep_the_newest(name: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    store = CheckpointStore(tmp_path, keep=2)
    for seq in (1, 2, 3):
        store.commit(backend, make_snapshot(100, seed=seq), _manifest(seq, name))
    assert [s for s, _ in store.list()] == [2, 3]
    assert not list(store.dir.glob(".*"))  # no temporary left behind
    manifest, snap = store.latest_good(backend)
    assert manifest.seq == 3 and manifest.sources == [{"row": 3}]
    assert snap.keys == make_snapshot(100, seed=3).keys
    assert_same(make_snapshot(100, seed=3).steps, snap.steps)


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
@pytest.mark.parametrize("name", ON_DISK)
def test_a_damaged_checkpoint_falls_back_to_the_previous_good_one(name: str, damage: str,
                                                                   tmp_path: Path) -> None:
    backend = get_backend(name)
    store = CheckpointStore(tmp_path, keep=3)
    store.commit(backend, make_snapshot(300, seed=1), _manifest(1, name))
    newest = store.commit(backend, make_snapshot(300, seed=2), _manifest(2, name))
    state_files = sorted((p for p in newest.rglob("*") if p.is_file()
                          and p.name != "MANIFEST.json"), key=lambda p: -p.stat().st_size)
    victim = newest / "MANIFEST.json" if damage == "manifest" else state_files[0]
    data = victim.read_bytes()
    if damage == "truncate" or damage == "manifest":
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    problems: list[str] = []
    manifest, snap = store.latest_good(backend, problems)
    assert manifest.seq == 1
    assert len(problems) == 1 and "checkpoint 00000002" in problems[0]
    assert_same(make_snapshot(300, seed=1).steps, snap.steps)


@pytest.mark.parametrize("name", ON_DISK)
def test_a_half_written_checkpoint_without_manifest_is_ignored(name: str,
                                                               tmp_path: Path) -> None:
    backend = get_backend(name)
    store = CheckpointStore(tmp_path)
    store.commit(backend, make_snapshot(10, seed=1), _manifest(1, name))
    half = store.dir / "00000002"
    half.mkdir()
    backend.write(half, make_snapshot(10, seed=2))  # crashed before its manifest
    problems: list[str] = []
    manifest, _ = store.latest_good(backend, problems)
    assert manifest.seq == 1 and "no manifest" in problems[0]


@pytest.mark.parametrize("block_bytes", [1, 1 << 12])
def test_rocksdb_reads_values_of_one_key_or_of_a_block_of_keys(
        block_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One value per key is how checkpoints of format 1 were written; a block of keys per
    value (a few hundred puts per step instead of one per key) is how they are written now."""
    from tickflow.engine.state import rocksdb

    monkeypatch.setattr(rocksdb, "BLOCK_BYTES", block_bytes)
    backend = get_backend("rocksdb")
    snap = make_snapshot(1_000, seed=5)
    backend.write(tmp_path, snap)
    monkeypatch.undo()
    assert_same(snap.steps, backend.read(tmp_path, snap.layout(), snap.rows()))
    ids = np.array([999, 0, 12, 13, 500, 12])
    per_key = {sid: f for sid, f in snap.layout().items() if snap.rows()[sid] == 1_000}
    back = backend.read(tmp_path, per_key, snap.rows(), ids)
    assert_same({sid: {k: v[ids] for k, v in snap.steps[sid].items()} for sid in per_key}, back)
    import rocksdict

    db = rocksdict.Rdict(str(tmp_path / "rocksdb"), rocksdict.Options(raw_mode=True),
                         column_families={"step.zscore_fast": rocksdict.Options(raw_mode=True)},
                         access_type=rocksdict.AccessType.read_only())
    try:
        puts = len(list(db.get_column_family("step.zscore_fast").keys()))
    finally:
        db.close()
    assert puts == (1_000 if block_bytes == 1 else -(-1_000 // (block_bytes // 321)))


def test_rocksdb_hashes_its_files_as_it_writes_and_the_manifest_checks_they_held(
        tmp_path: Path) -> None:
    """The digests the rocksdb backend takes on its thread are those of the files; a file
    changed after (same size, times put back) is hashed again by the manifest, which then
    holds its real digest."""
    import hashlib
    import os

    from tickflow.engine.state.rocksdb import RocksDBStateBackend

    snap = make_snapshot(2_000, seed=7)
    directory = tmp_path / "one"
    directory.mkdir()
    assert RocksDBStateBackend().write(tmp_path, snap) is None  # a shard page: not hashed
    known = RocksDBStateBackend().write_hashed(directory, snap)
    ssts = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.sst"))
    assert sorted(known) == ssts and len(ssts) == 4  # a file per step with state
    for rel, (_, digest) in known.items():
        assert digest == hashlib.sha256((directory / rel).read_bytes()).hexdigest()

    class Tampering(RocksDBStateBackend):
        def write_hashed(self, directory, snapshot):
            known = super().write_hashed(directory, snapshot)
            victim = directory / sorted(known)[0]
            st = victim.stat()
            with victim.open("r+b") as fh:
                fh.seek(100)
                byte = fh.read(1)
                fh.seek(100)
                fh.write(bytes([byte[0] ^ 0xFF]))
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.victim = str(victim.relative_to(directory)), bytes([byte[0] ^ 0xFF])
            return known

    backend = Tampering()
    store = CheckpointStore(tmp_path / "store")
    manifest = _manifest(1, "rocksdb")
    path = store.commit(backend, snap, manifest)
    rel = backend.victim[0]
    assert manifest.files[rel][1] == hashlib.sha256((path / rel).read_bytes()).hexdigest()
    assert store.verify(path).files == manifest.files
