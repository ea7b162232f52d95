"""Start-up without cyclic GC passes: run-job's own process and a Dask worker's first task turn
collection off while they import and set up, then freeze what they built and turn it back on.
In-process callers (tests, notebooks) keep their collector as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

JOB = """\
name: gc
mode: research
sources: [{id: ticks, kind: simulator, rows: 3000, symbols: 3}]
steps:
  - {kernel: ewma, params: {alpha: 0.1}, inputs: [price], output: ewma}
sinks: [{kind: parquet, path: OUT}]
"""


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=180)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_run_job_collects_again_once_the_run_is_going(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("OUT", str(tmp_path / "out.parquet")))
    seen = _fresh(f"""
    import gc, json, sys
    from tickflow.engine import cli
    enabled = []
    def sink_write(write):
        def wrapped(self, batch):
            enabled.append(gc.isenabled())
            return write(self, batch)
        return wrapped
    from tickflow.connectors import parquet_sink
    parquet_sink.ParquetSink.write = sink_write(parquet_sink.ParquetSink.write)
    sys.argv = ["run-job", "run", {str(job)!r}, "--quiet"]
    code = cli.main()
    print(json.dumps({{"code": code, "enabled_in_run": enabled, "enabled": gc.isenabled(),
                       "frozen": gc.get_freeze_count()}}))
    """)
    assert seen["code"] == 0
    assert seen["enabled_in_run"] and seen["enabled_in_run"][-1] is True
    assert seen["enabled"] is True
    assert seen["frozen"] > 10_000  # start-up's objects, frozen
    import pyarrow.parquet as pq

    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 3000


def test_main_with_arguments_leaves_the_callers_collector_alone(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("OUT", str(tmp_path / "out.parquet")))
    seen = _fresh(f"""
    import gc, json
    from tickflow.engine import cli
    code = cli.main(["run", {str(job)!r}, "--quiet"])
    print(json.dumps({{"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}}))
    """)
    assert seen == {"code": 0, "enabled": True, "frozen": 0}


def test_a_dask_workers_first_task_freezes_its_start_up_once(tmp_path) -> None:
    from tickflow.connectors.simulator import write_simulated_parquet

    ticks = tmp_path / "ticks.parquet"
    write_simulated_parquet(ticks, rows=3000, symbols=3, seed=1)
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("OUT", str(tmp_path / "out.parquet")).replace(
        "kind: simulator, rows: 3000, symbols: 3", f"kind: parquet, path: {ticks}"))
    seen = _fresh(f"""
    import gc, json
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors import dask_tasks
    from tickflow.engine.executors.dask import make_plan
    from tickflow.engine.loader import load_job
    plan = make_plan(compile_job(load_job({str(job)!r})), 2)
    rows, frozen, enabled = [], [], []
    for partition in (0, 1):
        rows.append(dask_tasks.run_partition(plan, partition).rows)
        frozen.append(gc.get_freeze_count())
        enabled.append(gc.isenabled())
    print(json.dumps({{"rows": rows, "frozen": frozen, "enabled": enabled}}))
    """)
    assert sum(seen["rows"]) == 3000
    assert seen["enabled"] == [True, True]
    assert seen["frozen"][0] > 10_000
    assert seen["frozen"][1] <= seen["frozen"][0]  # the second task freezes nothing more
