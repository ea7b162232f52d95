"""The research job on a real Dask cluster (a scheduler and two worker processes on loopback)
gives the local executor's output, survives a SIGKILLed worker, and fails clearly when the
scheduler is unreachable."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.parquet import read_provenance
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.errors import SinkError
from tickflow.engine.executors.dask import ClusterError, run_dask
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job

pytestmark = pytest.mark.slow

ROWS = 300_000
SORT = [("symbol", "ascending"), ("timestamp", "ascending"), ("sequence", "ascending")]


def research_job(ticks: Path, out: Path, *overrides: str) -> CompiledJob:
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(out)}
    return compile_job(load_job(ROOT / "jobs" / "research.yaml", env=env,
                                overrides=["executor.workers=2", f"report.path={out}/report.md",
                                           *overrides]))


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=8, seed=21, row_group_rows=65_536)
    return path


@pytest.fixture(scope="module")
def local_run(ticks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("local")
    summary = run_local(research_job(ticks, out, "report.path=null"))
    return out / "research_features.parquet", summary


def sorted_table(path: Path) -> pa.Table:
    return pq.read_table(path).replace_schema_metadata(None).sort_by(SORT)


def assert_same_rows(expected: pa.Table, got: pa.Table) -> None:
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows == ROWS
    for name in expected.column_names:
        a = expected.column(name).to_numpy(zero_copy_only=False)
        b = got.column(name).to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":  # bit for bit: each key met the same kernels in the same order
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert (a == b).all(), name


def report_of(path: Path) -> dict[str, Any]:
    """The report statistics of a finished output, fed in its stored order."""
    sink = ResearchReportSink(ResearchReportConfig(), _context())
    for batch in pq.ParquetFile(path).iter_batches():  # the report reads any columns present
        sink.write(batch)
    return sink.results()


def _context() -> Any:
    from tickflow.connectors.base import RunContext

    return RunContext(job_name="test", quiet=True)


def parts_of(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def test_cluster_output_equals_the_local_executors(
        ticks: Path, local_run: tuple[Path, Any], client: Any, tmp_path: Path) -> None:
    local_path, local_summary = local_run
    out = tmp_path / "dask"
    summary = run_dask(research_job(ticks, out, "executor.kind=dask"), client=client,
                       partitions=3)
    dataset = out / "research_features.parquet"
    parts = parts_of(dataset)
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet",
                                       "part-00002.parquet"]
    assert summary.rows == ROWS
    assert summary.signal_counts == local_summary.signal_counts
    assert len({r.worker for r in summary.parts}) == 2  # both worker processes took part
    keys = [k for r in summary.parts for k in r.keys]
    assert len(keys) == len(set(keys)) == 8  # every key in exactly one partition
    for i, part in enumerate(parts):
        meta = read_provenance(part)
        assert meta["partition"] == str(i) and meta["partitions"] == "3"
        assert meta["job_name"] == "crypto-research"
        assert meta["job_yaml"] == (ROOT / "jobs" / "research.yaml").read_text()
    assert_same_rows(sorted_table(local_path), sorted_table(dataset))

    # the report from the parts: the same per-symbol statistics and correlations
    expected = report_of(local_path)
    got = summary.report
    assert got is not None and got["symbols"] == expected["symbols"]
    assert got["rows"] == ROWS
    for sym in expected["symbols"]:
        for stat, value in expected["stats"][sym].items():
            assert got["stats"][sym][stat] == pytest.approx(value, rel=1e-9, abs=1e-15), \
                (sym, stat)
    np.testing.assert_allclose(got["correlation"], expected["correlation"], rtol=1e-12)
    report = (out / "report.md").read_text()
    assert "| BTC-USD |" in report and "Correlation of log returns" in report


def test_a_worker_killed_mid_job_is_recomputed_without_corrupting_the_output(
        ticks: Path, local_run: tuple[Path, Any], client: Any, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    job = research_job(ticks, out, "executor.kind=dask", "report=null")
    pids = client.run(os.getpid)
    killed: list[tuple[int, str, list[int]]] = []  # pid, address, partitions it was running

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for addr, keys in client.processing().items():
                running = [int(str(k).rsplit("-", 1)[1]) for k in keys if "-part-" in str(k)]
                if running and addr in pids:
                    os.kill(pids[addr], signal.SIGKILL)
                    killed.append((pids[addr], addr, running))
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_a_busy_worker)
    watcher.start()
    with ThreadPoolExecutor(1) as pool:
        summary = pool.submit(run_dask, job, client=client, partitions=4).result(timeout=120)
    watcher.join()
    assert killed, "no partition task was seen running"
    pid, address, running = killed[0]
    for k in running:  # what the killed worker was running was recomputed elsewhere
        assert summary.parts[k].worker not in ("", address)
    dataset = out / "research_features.parquet"
    assert [p.name for p in parts_of(dataset)] == [f"part-{k:05d}.parquet" for k in range(4)]
    assert sorted(p.name for p in out.iterdir()) == ["research_features.parquet"]  # no staging
    run_ids = {read_provenance(p)["run_id"] for p in parts_of(dataset)}
    assert len(run_ids) == 1
    assert summary.rows == ROWS
    assert_same_rows(sorted_table(local_run[0]), sorted_table(dataset))
    client.wait_for_workers(2, timeout=60)  # the nanny brought the worker back
    assert pid not in client.run(os.getpid).values()


def test_a_rerun_replaces_the_parts_and_a_foreign_directory_is_refused(
        tmp_path: Path, client: Any) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=4_000, symbols=3, seed=2)
    out = tmp_path / "out"
    dataset = out / "research_features.parquet"
    dataset.parent.mkdir()
    dataset.write_bytes(b"an older single-file output")  # a local run's file is replaced
    job = research_job(ticks, out, "report=null")
    run_dask(job, client=client, partitions=3)
    assert len(parts_of(dataset)) == 3
    run_dask(job, client=client, partitions=2)
    assert [p.name for p in parts_of(dataset)] == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(dataset).num_rows == 4_000
    (dataset / "notes.txt").write_text("mine")
    with pytest.raises(SinkError, match="refusing to replace the directory"):
        run_dask(job, client=client, partitions=2)
    assert (dataset / "notes.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["research_features.parquet"]


def test_run_job_submits_to_the_scheduler_named_in_the_yaml(
        tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=5_000, symbols=4, seed=3)
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    address = client.scheduler.address
    code = main([str(ROOT / "jobs" / "research.yaml"), "--set", "executor.kind=dask",
                 "--set", f"executor.address={address}", "--set", "report=null"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert f"dask: {address}, 2 workers, 2 key partitions; dashboard http" in stdout
    assert "processed 5,000 rows" in stdout and "(2 parts," in stdout
    assert pq.read_table(tmp_path / "out" / "research_features.parquet").num_rows == 5_000


def test_an_unreachable_scheduler_is_a_clear_error_within_seconds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=1_000, symbols=2, seed=1)
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main([str(ROOT / "jobs" / "research.yaml"), "--cluster", f"tcp://127.0.0.1:{port}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 5 s" in err
    assert "Traceback" not in err
    assert elapsed < 30
    assert not (tmp_path / "out").exists()


def test_a_job_the_cluster_cannot_partition_is_refused_before_submitting(
        tmp_path: Path) -> None:
    job_file = tmp_path / "sim.yaml"
    job_file.write_text("name: sim\nmode: research\n"
                        "sources: [{kind: simulator, rows: 1000, symbols: 2}]\n"
                        "executor: {kind: dask, address: 'tcp://127.0.0.1:1'}\n")
    with pytest.raises(ClusterError, match=r"reads file sources .* source 'simulator0' is "
                                           r"kind 'simulator'"):
        run_dask(compile_job(load_job(job_file)))


def test_a_part_changed_after_its_task_is_refused_at_commit(ticks: Path, tmp_path: Path) -> None:
    """Each task records its part's rows and file identity; the commit checks them and names
    the part."""
    from tickflow.engine.executors.dask import make_plan
    from tickflow.engine.executors.dask_tasks import commit_outputs, run_partition

    out = tmp_path / "dask"
    plan = make_plan(research_job(ticks, out, "executor.kind=dask", "report=null"), 2)
    results = [run_partition(plan, i) for i in range(plan.partitions)]
    assert all(len(r.digests) == len(plan.outputs) == 1 for r in results)
    staging = out / f".research_features.parquet.{plan.run_id}"  # beside the target
    staged = staging / "part-00001.parquet"
    data = staged.read_bytes()
    staged.write_bytes(data[: len(data) // 2])  # truncated after its task finished
    with pytest.raises(SinkError, match=r"part-00001\.parquet.*(cannot be read|changed since)"):
        commit_outputs(plan, results)
    assert not (out / "research_features.parquet").exists()  # the output is left unchanged
    # rewritten in place at the same size, its times set back: still not the task's file
    st = staged.stat()
    staged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(SinkError, match=r"part-00001\.parquet.*changed since its task"):
        commit_outputs(plan, results)
    assert not (out / "research_features.parquet").exists()
    results[1] = run_partition(plan, 1)  # the partition run again: the commit goes through
    committed = commit_outputs(plan, results)
    assert [len(files) for files in committed] == [2]
    assert pq.read_table(out / "research_features.parquet").num_rows == sum(
        r.rows for r in results)
