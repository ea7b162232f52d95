"""`run-job partition` writes a dataset split by key hash; Dask tasks read only their files, and
every run of it (local, 1 and 2 Dask worker processes) equals the local run of the original."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.dask.test_dask_executor import assert_same_rows, sorted_table
from tickflow.connectors.base import RunContext
from tickflow.connectors.parquet import ParquetSource, ParquetSourceConfig
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.errors import SinkError, SourceError
from tickflow.engine.executors.dask import run_dask
from tickflow.engine.executors.local import run_local
from tickflow.engine.executors.partition import ScanCounts, partition_batches, partition_of
from tickflow.engine.executors.partitioned_dataset import (
    MANIFEST,
    dataset_files,
    read_manifest,
    write_partitioned_dataset,
)
from tickflow.engine.loader import load_job

pytestmark = pytest.mark.slow

ROWS = 300_000  # the helpers imported above check this row count
PARTS = 4


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=8, seed=21, row_group_rows=65_536)
    return path


@pytest.fixture(scope="module")
def dataset(ticks: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset") / "ticks_by_symbol"
    assert main(["partition", str(ticks), str(out), "--by", "symbol",
                 "--parts", str(PARTS)]) == 0
    return out


def research_job(ticks: Path, out: Path, *overrides: str, report: bool = False) -> CompiledJob:
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(out)}
    return compile_job(load_job(ROOT / "jobs" / "research.yaml", env=env,
                                overrides=["executor.workers=2", *overrides,
                                           *([] if report else ["report=null"])]))


@pytest.fixture(scope="module")
def local_original(ticks: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("local")
    run_local(research_job(ticks, out))
    return sorted_table(out / "research_features.parquet")


def by_key(table: pa.Table) -> dict[str, pa.Table]:
    return {k: table.filter(pa.compute.equal(table["symbol"], k))
            for k in table["symbol"].unique().to_pylist()}


def test_partition_round_trip_keeps_rows_keys_and_order(ticks: Path, dataset: Path) -> None:
    original = pq.read_table(ticks).replace_schema_metadata(None)
    manifest = json.loads((dataset / MANIFEST).read_text())
    assert manifest["by"] == "symbol" and manifest["parts"] == PARTS
    assert manifest["rows"] == ROWS
    files = sorted(p.name for p in dataset.iterdir() if p.suffix == ".parquet")
    assert files == [f"part-{j:05d}.parquet" for j in range(PARTS)]
    seen: dict[str, int] = {}
    total = 0
    expected = by_key(original)
    for entry in manifest["files"]:
        part = pq.read_table(dataset / entry["path"]).replace_schema_metadata(None)
        assert part.schema == original.schema
        assert part.num_rows == entry["rows"]
        total += part.num_rows
        keys = sorted(part["symbol"].unique().to_pylist())
        assert keys == entry["keys"]
        for key, rows in by_key(part).items():
            assert partition_of(key, PARTS) == entry["part"]
            assert key not in seen, f"{key} in parts {seen[key]} and {entry['part']}"
            seen[key] = entry["part"]
            assert rows.equals(expected[key]), key  # the key's rows, in the original order
    assert total == ROWS and sorted(seen) == sorted(expected)


def test_a_task_reads_only_the_files_of_its_keys(ticks: Path, dataset: Path) -> None:
    source = ParquetSource(ParquetSourceConfig(path=str(dataset)), RunContext(job_name="t"))
    original = pq.read_table(ticks).replace_schema_metadata(None)
    manifest = read_manifest(dataset)
    assert manifest is not None
    for partitions, whole in ((2, True), (3, False)):  # 3 does not divide 4: filtered files
        for k in range(partitions):
            plan = dataset_files(source, "symbol", partitions, k)
            assert plan is not None
            files, skipped = plan
            mine = [f for f in manifest.files
                    if any(partition_of(key, partitions) == k for key in f.keys)]
            assert [f.path for f in mine] == files_of(files)
            assert skipped == sum(f.row_groups for f in manifest.files if f not in mine)
            if whole:
                assert all(flag for _, flag in files)
            counts = ScanCounts()
            got = pa.Table.from_batches(list(partition_batches(
                source, "symbol", partitions, k, 50_000, counts, files=files)),
                schema=source.schema())
            keys = [s for s in original["symbol"].unique().to_pylist()
                    if partition_of(s, partitions) == k]
            want = original.filter(pa.compute.is_in(original["symbol"], pa.array(keys)))
            assert sorted_rows(got).equals(sorted_rows(want))
            assert counts.row_groups_read == sum(f.row_groups for f in mine)


def files_of(plan: list[tuple[Path, bool]]) -> list[Path]:
    return [p for p, _ in plan]


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending"),
                          ("sequence", "ascending")])


def test_a_changed_dataset_is_not_trusted(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    write_partitioned_dataset(str(ticks), str(out), parts=2)
    source = ParquetSource(ParquetSourceConfig(path=str(out)), RunContext(job_name="t"))
    # an extra file the manifest does not list: the task scans every file instead
    pq.write_table(pq.read_table(out / "part-00000.parquet").slice(0, 10), out / "extra.parquet")
    assert dataset_files(source, "symbol", 2, 0) is None
    (out / "extra.parquet").unlink()
    # a part rewritten with other rows: refused, naming the file
    pq.write_table(pq.read_table(out / "part-00001.parquet").slice(0, 10),
                   out / "part-00001.parquet")
    with pytest.raises(SourceError, match=r"part-00001\.parquet' has 10 rows.*dataset changed"):
        dataset_files(source, "symbol", 2, 1)


def test_partition_replaces_a_dataset_and_refuses_other_directories(
        ticks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    write_partitioned_dataset(str(ticks), str(out), parts=4)
    assert main(["partition", str(ticks), str(out), "--parts", "2"]) == 0
    assert "into 2 parts" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet",
                                                     "part-00001.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SinkError, match="refusing to replace"):
        write_partitioned_dataset(str(ticks), str(other), parts=2)
    assert (other / "notes.txt").read_text() == "keep me"
    assert main(["partition", str(ticks), str(tmp_path / "x"), "--by", "nope"]) == 1
    assert "has no column 'nope'" in capsys.readouterr().err


def test_a_local_run_of_the_dataset_equals_the_original(
        dataset: Path, local_original: pa.Table, tmp_path: Path) -> None:
    run_local(research_job(dataset, tmp_path))
    assert_same_rows(local_original, sorted_table(tmp_path / "research_features.parquet"))


def test_two_dask_workers_on_the_dataset_equal_the_local_run_of_the_original(
        dataset: Path, local_original: pa.Table, client: Any, tmp_path: Path) -> None:
    for partitions in (2, 3):  # whole files, then files shared by two tasks
        out = tmp_path / f"p{partitions}"
        # the job's HTML report on 2 partitions: each task's report sink travels back pickled
        summary = run_dask(research_job(dataset, out, "executor.kind=dask",
                                        report=partitions == 2), client=client,
                           partitions=partitions)
        assert len({r.worker for r in summary.parts}) == 2
        assert_same_rows(local_original, sorted_table(out / "research_features.parquet"))
        if partitions == 2:  # each task opened only its own files
            assert (out / "research_report.html").stat().st_size > 10_000
            assert all(r.row_groups_skipped > 0 for r in summary.parts)
            assert sum(r.row_groups_read for r in summary.parts) == sum(
                f.row_groups for f in read_manifest(dataset).files)  # type: ignore[union-attr]


def test_one_dask_worker_process_on_the_dataset_equals_the_local_run_of_the_original(
        dataset: Path, local_original: pa.Table, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(dataset))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    code = main([str(ROOT / "jobs" / "research.yaml"), "--cluster", "local", "--workers", "1",
                 "--set", "report=null"])
    assert code == 0
    assert ", 1 worker, 1 key partitions" in capsys.readouterr().out
    assert_same_rows(local_original, sorted_table(tmp_path / "research_features.parquet"))
