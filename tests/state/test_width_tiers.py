"""Width tiers of per-row buffers: memory by each key's rows, outputs unchanged, checkpoints
at each key's width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.checkpoint import CheckpointStore, Manifest
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.runtime.pipeline import Pipeline
from tickflow.engine.state import tiers
from tickflow.engine.state.backend import TIER_KEY, get_backend, side_of
from tickflow.engine.state.lanes import gather, scatter
from tickflow.engine.testing import _bind

from ..execution.test_local_executor import JOBS, assert_tables_equal


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The core feature set over 1,500 symbols of about 20 ticks each: the 100-row windows
    put most keys in a 32-wide tier 0 and the busiest in side tiers."""
    tmp = tmp_path_factory.mktemp("tiers")
    ticks = tmp / "ticks.parquet"
    write_simulated_parquet(ticks, rows=30_000, symbols=1_500, seed=9)
    path = tmp / "job.yaml"
    path.write_text(f"""\
name: tiers
mode: research
sources:
  - kind: parquet
    path: {ticks}
include: [{JOBS / 'features' / 'core.yaml'}]
sinks:
  - kind: parquet
    path: {tmp / 'out.parquet'}
""")
    return compile_job(load_job(path))


def _batches(job: object) -> list[pa.RecordBatch]:
    return list(pq.ParquetFile(job.sources[0].config.path).iter_batches(4_000))  # type: ignore[attr-defined]


def _run(job: object, workers: int, batches: list[pa.RecordBatch],
         pipeline: Pipeline | None = None) -> list[pa.RecordBatch]:
    pipeline = pipeline or Pipeline(job, workers)
    try:
        return [pipeline.process(b) for b in batches]
    finally:
        pipeline.close()


def test_state_saved_from_tiers_restores_into_any_lane_count(job: object) -> None:
    batches = _batches(job)
    whole = pa.Table.from_batches(_run(job, 1, batches))
    first = Pipeline(job, 2)
    head = [first.process(b) for b in batches[:5]]
    states = [st for lane in first.lanes for st in lane.states]
    assert any(len(st.tiers) > 1 for st in states)  # side tiers are in use when saved
    assert any(st.per_row and st.width < 100 for st in states)
    snapshot = gather(first)
    first.close()
    assert not any(name.endswith("ring_ts") for f in snapshot.steps.values() for name in f
                   if "ofi" not in name)
    for workers in (1, 3):
        second = Pipeline(job, workers)
        scatter(second, snapshot)
        tail = _run(job, workers, batches[5:], second)
        assert_tables_equal(whole, pa.Table.from_batches(head + tail))


@pytest.mark.parametrize("backend_name", ["rocksdb", "tiledb"])
def test_a_checkpoint_saves_each_key_at_its_tier_width(job: object, tmp_path: Path,
                                                      backend_name: str) -> None:
    """Keys of wider tiers are saved apart (``<step>@w<width>``), so a checkpoint costs what
    the state costs in RAM; a restore into any lane count and ``run-job state``'s one-key read
    find them."""
    batches = _batches(job)
    whole = pa.Table.from_batches(_run(job, 1, batches))
    first = Pipeline(job, 2)
    head = [first.process(b) for b in batches[:5]]
    snapshot = gather(first)
    side = {sid: f for sid, f in snapshot.steps.items() if side_of(sid) is not None}
    assert side  # the busiest keys live in wider tiers
    for sid, fields in side.items():
        own = snapshot.steps[side_of(sid)]
        ids = fields[TIER_KEY]
        assert ids.size < snapshot.n_keys / 4 and (np.diff(ids) > 0).all()
        wide = [n for n in own if own[n].ndim > 1 and fields[n].shape[1:] != own[n].shape[1:]]
        assert wide and all(fields[n].shape[-1] > own[n].shape[-1] for n in wide)
    saved = sum(a.nbytes for f in snapshot.steps.values() for a in f.values())
    dense = sum(a.nbytes for lane in first.lanes for st in lane.states
                for a in st.snapshot(np.arange(st.n_keys)).values())  # all at the widest width
    assert saved < 0.8 * dense
    first.close()
    backend = get_backend(backend_name)
    store = CheckpointStore(tmp_path / "state")
    manifest = Manifest(seq=1, job_name="tiers", spec_sha256="", layout_sha256="",
                        backend=backend_name, n_keys=0, rows=0, batches=5, sources=[],
                        sinks=[])
    path = store.commit(backend, snapshot, manifest)
    manifest = store.verify(path)
    loaded = store.load(backend, path, manifest)
    assert set(loaded.steps) == set(snapshot.steps)
    sid, fields = next(iter(side.items()))
    kid = int(fields[TIER_KEY][-1])
    one = store.load(backend, path, manifest, key_ids=np.array([kid])).steps[side_of(sid)]
    for name, arr in one.items():
        np.testing.assert_array_equal(arr[0], fields[name][-1], err_msg=name)
    for workers in (1, 3):
        second = Pipeline(job, workers)
        scatter(second, loaded)
        tail = _run(job, workers, batches[5:], second)
        assert_tables_equal(whole, pa.Table.from_batches(head + tail))


def test_two_lanes_give_the_one_lane_output(job: object) -> None:
    batches = _batches(job)
    assert_tables_equal(pa.Table.from_batches(_run(job, 1, batches)),
                        pa.Table.from_batches(_run(job, 2, batches)))


def test_100k_keys_of_few_rows_cost_their_rows_not_the_window() -> None:
    bound = _bind("historical_var", {"window": 100}, None)
    state = bound.new_state()
    rng = np.random.default_rng(1)
    keys = np.concatenate([np.repeat(np.arange(100_000), 5), np.zeros(500, np.int64)])
    rng.shuffle(keys)
    for lo in range(0, keys.size, 65_536):
        k = keys[lo:lo + 65_536]
        bound.run(k, np.arange(k.size, dtype=np.int64), [rng.normal(0, 1e-3, k.size)], state)
    assert [t.width for t in state.tiers] == [8, 100]
    whole_window = 100_000 * 100 * 8 * 2  # vals and sorted, 100 wide for every key
    assert state.nbytes() < whole_window / 6


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_unused_rows_of_a_large_array_are_never_written() -> None:
    before = _rss()
    arr = tiers.blank((1 << 25, 1), np.float64)  # 256 MB, mapped on its own
    assert arr.flags.c_contiguous and arr.flags.writeable
    assert _rss() - before < 16 << 20  # nothing resident until written
    bound = _bind("sma", {"window": 50}, None)
    tier = tiers.Tier(bound.definition.state(bound.params), width=8)
    tier.ensure_rows(200_000)
    tier.ensure_rows(200_001)  # grows the capacity (eightfold: mapped); fills one more row
    assert tier.capacity == 1_600_000 and tier.filled == 200_001
    vals = tier.arrays["vals"]
    assert np.isnan(vals[:200_001]).all()
    assert not vals[200_001:].any()  # rows past `filled` were never written (NaN when filled)


def test_a_mapped_tier_grows_and_widens_in_place_keeping_every_value() -> None:
    """The key axis grows and per-row buffers widen inside the array's own reserved map
    (no new pages for the rows already there), rings of time windows re-laid from their
    heads: the same values as re-laying into new arrays."""
    from tickflow.kernels.base import ring_fields

    fields = [*ring_fields(100, ("vals",), "w", per_row=True, stub_ts=True),
              *ring_fields(4, ("tv",), "t")]  # a time window: rings that may wrap
    tier = tiers.Tier(fields, width=8)
    rng = np.random.default_rng(5)
    n = 60_000  # 60,000 x 8 x 8 bytes: every per-row field mapped
    tier.ensure_rows(n)
    mapped = {name: a.ctypes.data for name, a in tier.arrays.items()
              if a.nbytes >= tiers.MAP_BYTES}
    assert set(mapped) == {"vals", "tv", "t_ts"}
    for a in tier.arrays.values():
        a[:n] = rng.integers(0, 4, a[:n].shape) if a.dtype.kind == "i" else rng.normal(
            size=a[:n].shape)
    tier.arrays["w_head"][:n] = 0  # a row window below its full width never wraps
    expect = tiers.fit(fields, {k: a[:n].copy() for k, a in tier.arrays.items()},
                       {"vals": 16, "tv": 8, "t_ts": 8})
    tier.widen(16)
    tier.grow_time()
    tier.ensure_rows(8 * n)  # the key axis grows past its capacity
    for name, a in tier.arrays.items():
        np.testing.assert_array_equal(a[:n], expect[name], err_msg=name)
    for name, at in mapped.items():
        assert tier.arrays[name].ctypes.data == at, name  # the same map: nothing copied out
    assert tier.arrays["vals"].shape[1:] == (16,) and tier.arrays["tv"].shape[1:] == (8,)
    assert np.isnan(tier.arrays["vals"][n:8 * n]).all()  # new rows get the fill value


def test_arrays_reserved_alike_do_not_start_a_multiple_of_the_reserve_apart() -> None:
    """(Aligned alike, one key's rows of several fields share cache sets: the kernels at
    100,000 keys took 2.5x as long.)"""
    arrays = [tiers.blank((1 << 18,), np.float64, tiers.RESERVE_BYTES) for _ in range(8)]
    reserved = tiers.RESERVE_FACTOR * arrays[0].nbytes  # 512 MB each, one after the other
    assert len({a.ctypes.data % reserved for a in arrays}) == 8


def test_key_axis_maps_are_zeros_grown_in_place_and_cost_what_is_written() -> None:
    """Which tier a key lives in (``tier_of``, ``local``): zeros, mapped once large, grown
    in place; their room past the keys in use is never written (from glibc's heap,
    ``np.zeros`` wrote all of it)."""
    small = tiers.zeros(1000, np.int64)
    assert small.shape == (1000,) and not small.any()
    small[:10] = np.arange(10)
    before = _rss()
    big = tiers.zeros(1 << 22, np.int64, small)  # 32 MB: mapped, the old values copied
    assert _rss() - before < 8 << 20  # its zeros are not resident
    assert big[:10].tolist() == list(range(10)) and not big[10:].any()
    big[(1 << 22) - 1] = 7
    at = big.ctypes.data
    grown = tiers.zeros(1 << 23, np.int64, big)  # in the map's own room: nothing copied
    assert grown.ctypes.data == at and grown[(1 << 22) - 1] == 7
    assert grown[:10].tolist() == list(range(10)) and not grown[1 << 22:].any()
    assert tiers.zeros(100, np.int64, grown) is grown  # holds it already
    assert _rss() - before < 16 << 20
