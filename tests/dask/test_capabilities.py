"""The Dask executor chooses sources and sinks by declared capability, never by kind name.

A sink that implements ``PartitionedSink`` (here the Parquet sink, written into real part files
and published) or ``MergeableSink`` (the research report) is accepted; one that declares neither
is refused before anything is submitted, naming the sink.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.parquet import ParquetSink, ParquetSinkConfig
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.compile import compile_job
from tickflow.engine.contract import MergeableSink, PartitionedSink, RunContext
from tickflow.engine.errors import SinkError
from tickflow.engine.executors.dask import ClusterError, check_supported, make_plan
from tickflow.engine.loader import load_job


def _table(rows: int, start: int = 0) -> pa.Table:
    return pa.table({"symbol": [f"S{i % 3}" for i in range(start, start + rows)],
                     "price": [float(i) for i in range(start, start + rows)]})


def test_the_parquet_sink_and_the_report_declare_what_dask_needs() -> None:
    context = RunContext(job_name="caps")
    parquet = ParquetSink(ParquetSinkConfig(path="out.parquet"), context)
    report = ResearchReportSink(ResearchReportConfig(), context)
    assert isinstance(parquet, PartitionedSink)
    assert not isinstance(parquet, MergeableSink)
    assert isinstance(report, MergeableSink)
    assert not isinstance(report, PartitionedSink)


def test_partitioned_parquet_parts_are_published_together(tmp_path: Path) -> None:
    target = tmp_path / "features.parquet"
    sink = ParquetSink(ParquetSinkConfig(path=str(target)), RunContext(job_name="caps"))
    for partition, start in ((0, 0), (1, 10)):
        part = sink.part("run1", partition, {"tickflow.partition": str(partition)})
        table = _table(10, start)
        part.open(table.schema)
        part.write(table.to_batches()[0])
        part.close()
    assert not target.exists()  # staged, not yet published
    files = sink.commit_parts("run1", 2)
    assert [Path(f).name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(target).num_rows == 20
    meta = pq.read_metadata(target / "part-00001.parquet").metadata
    assert meta[b"tickflow.partition"] == b"1"
    assert meta[b"tickflow.job_name"] == b"caps"


def test_a_missing_part_leaves_the_output_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "features.parquet"
    sink = ParquetSink(ParquetSinkConfig(path=str(target)), RunContext(job_name="caps"))
    part = sink.part("run2", 0, {})
    table = _table(5)
    part.open(table.schema)
    part.write(table.to_batches()[0])
    part.close()
    with pytest.raises(SinkError, match="not the expected 2 parts"):
        sink.commit_parts("run2", 2)
    assert not target.exists()
    sink.discard_parts("run2")
    assert not any(tmp_path.iterdir())


def test_a_sink_without_a_partition_capability_is_refused(tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(str(ticks), rows=200, symbols=2, seed=1)
    job_file = tmp_path / "console.yaml"
    job_file.write_text(f"name: console\nmode: research\n"
                        f"sources: [{{kind: parquet, path: '{ticks}'}}]\n"
                        f"sinks: [{{kind: parquet, path: out.parquet}}, {{kind: console}}]\n")
    job = compile_job(load_job(str(job_file)))
    with pytest.raises(ClusterError, match=r"sinks\[1\] is kind 'console'"):
        check_supported(job)


def test_the_plan_names_partitioned_sinks_and_makes_file_paths_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_simulated_parquet("ticks.parquet", rows=200, symbols=2, seed=1)
    Path("job.yaml").write_text("name: plan\nmode: research\n"
                                "sources: [{kind: parquet, path: ticks.parquet}]\n"
                                "sinks: [{kind: parquet, path: out/features.parquet}]\n"
                                "report: {}\n")
    job = compile_job(load_job("job.yaml"))
    check_supported(job)
    plan = make_plan(job, 2)
    assert plan.outputs == (0,)  # the parquet sink; the report is merged, not partitioned
    assert plan.loaded.data["sources"][0]["path"] == str(tmp_path / "ticks.parquet")
    assert plan.loaded.data["sinks"][0]["path"] == str(tmp_path / "out" / "features.parquet")
