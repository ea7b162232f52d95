"""A Parquet source reads the key column dictionary-encoded for a one-stream research run:
the output keeps the plain string column and every value of a run over plain strings."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.runtime.driver import Driver
from tickflow.engine.runtime.pipeline import Pipeline

from .test_local_executor import JOBS, assert_tables_equal


def _job(tmp_path: Path, ticks: Path, out: Path, morsel_rows: int) -> object:
    path = tmp_path / "job.yaml"
    path.write_text(f"""\
name: dictionary-keys
mode: research
sources:
  - kind: parquet
    path: {ticks}
include: [{JOBS / 'features' / 'core.yaml'}]
signals:
  buy: zscore < -2.0 and rsi < 30
sinks:
  - kind: parquet
    path: {out}
executor:
  morsel_rows: {morsel_rows}
""")
    return compile_job(load_job(path))


def _checkpointed(tmp_path: Path, ticks: Path, out: Path, morsel_rows: int,
                  backend: str) -> Path:
    """The job of :func:`_job` with ``backend`` state checkpointed every 2 batches."""
    _job(tmp_path, ticks, out, morsel_rows)
    path = tmp_path / "job.yaml"
    path.write_text(path.read_text() + f"state: {{backend: {backend}, path: {tmp_path / 'st'}, "
                                       f"checkpoint: {{every: 2}}}}\n")
    return path


def _stopped_part_way(path: Path, morsel_rows: int) -> Driver:
    """A checkpointed run of the job at ``path`` stopped after about 7,000 of its 15,000 rows."""
    import threading

    from tickflow.engine.state.recovery import open_checkpointer

    job = compile_job(load_job(path))
    stop = threading.Event()
    seen = [0]

    def progress(rows: int) -> None:
        seen[0] += rows
        if seen[0] >= 7_000:
            stop.set()

    first = Driver(job, morsel_rows=morsel_rows, checkpointer=open_checkpointer(job),
                   stop=stop, progress=progress)
    assert first.run().rows < 15_000
    return first


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small row groups, and symbols that first appear in later row groups."""
    tmp = tmp_path_factory.mktemp("dict")
    first, second = tmp / "a.parquet", tmp / "b.parquet"
    write_simulated_parquet(first, rows=6_000, symbols=["BTC-USD", "ETH-USD"], seed=3)
    write_simulated_parquet(second, rows=9_000, symbols=["SOL-USD", "ETH-USD", "ADA-USD"],
                            seed=4, start="2026-01-01T00:01:00Z")
    table = pa.concat_tables([pq.read_table(first), pq.read_table(second)])
    path = tmp / "ticks.parquet"
    pq.write_table(table, path, row_group_size=2_500)
    return path


def _plain_reference(job: object, ticks: Path) -> pa.Table:
    """The pipeline over plain-string batches, in one lane."""
    pipeline = Pipeline(job, 1)  # type: ignore[arg-type]
    batches = [pipeline.process(b) for b in pq.ParquetFile(ticks).iter_batches(1_000)]
    pipeline.close()
    return pa.Table.from_batches(batches)


@pytest.mark.parametrize(("workers", "morsel_rows"), [(1, 65_536), (2, 1_000), (3, 777)])
def test_dictionary_read_keeps_schema_and_values(tmp_path: Path, ticks: Path, workers: int,
                                                 morsel_rows: int) -> None:
    out = tmp_path / "out.parquet"
    job = _job(tmp_path, ticks, out, morsel_rows)
    source = job.sources[0].definition.cls(job.sources[0].config, job.context)  # type: ignore
    source.read_as_dictionary(["symbol"])
    batch = next(iter(source.batches(None, 1_000)))
    assert pa.types.is_dictionary(batch.schema.field("symbol").type)  # the path under test
    driver = Driver(job, workers=workers, morsel_rows=morsel_rows)
    assert driver.run().rows == 15_000
    assert driver.graph.main_pipeline.decode == {"symbol"}  # type: ignore[union-attr]
    got = pq.read_table(out)
    assert got.schema.field("symbol").type == pa.string()
    reference = _plain_reference(job, ticks)
    assert_tables_equal(reference, got.replace_schema_metadata(None))
    assert set(got.column("symbol").to_pylist()) == {"BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"}


@pytest.mark.parametrize("backend", ["rocksdb", "tiledb"])
def test_a_checkpointed_run_reads_keys_as_a_dictionary_and_resumes_the_same(
        tmp_path: Path, ticks: Path, backend: str) -> None:
    """With checkpoints (state not paged) the keys are read dictionary-encoded too; a run
    stopped part way and resumed writes what plain strings give, and the checkpoint's key
    index holds the plain values."""
    from tickflow.engine.checkpoint import CheckpointStore
    from tickflow.engine.state.recovery import open_checkpointer

    out = tmp_path / "out.parquet"
    path = _checkpointed(tmp_path, ticks, out, 1_000, backend)
    first = _stopped_part_way(path, 1_000)
    job = first.job
    assert first.graph.main_pipeline.decode == {"symbol"}  # type: ignore[union-attr]
    store = CheckpointStore(tmp_path / "st" / "dictionary-keys")
    keys = store.load(open_checkpointer(job).backend, store.list()[-1][1],
                      store.verify(store.list()[-1][1])).keys
    assert set(keys) <= {"BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"} and len(keys) >= 2
    job = compile_job(load_job(path))
    Driver(job, morsel_rows=1_000, checkpointer=open_checkpointer(job)).run()
    got = pq.read_table(out)
    assert got.schema.field("symbol").type == pa.string()
    assert_tables_equal(_plain_reference(job, ticks), got.replace_schema_metadata(None))
