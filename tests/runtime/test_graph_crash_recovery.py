"""Graph checkpoints: a job of two sources, bars, an as-of join, kernels on two streams and a
keyed signal, checkpointed to rocksdb or tiledb, SIGKILLed at random points and restarted,
writes exactly what an uninterrupted run writes, in both of its outputs.

The subprocess, kill and comparison helpers are those of tests/state/test_crash_recovery.py
(the job is named ``crashy`` so that they find its checkpoints).
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.state.test_crash_recovery import _checkpoints, _finish, _kill_at, assert_tables_equal
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main

JOB = """\
name: crashy
mode: research
sources:
  - {{id: coinbase, kind: parquet, path: coinbase.parquet}}
  - {{id: kraken, kind: parquet, path: kraken.parquet}}
steps:
  - {{id: bars, operator: resample_ohlc, from: coinbase, params: {{interval: 10s}}}}
  - {{id: bar_ema, kernel: ema, input: close, params: {{span: 5}}, output: bar_ema}}
  - {{id: kraken_sma, kernel: sma, from: kraken, params: {{window: 20}},
     output: kraken_price_sma}}
  - {{id: aligned, operator: asof_join, from: coinbase,
     params: {{right: kraken, tolerance: 2s, suffixes: ["", "_kraken"]}}}}
  - {{id: with_bars, operator: asof_join, params: {{right: bars}}}}
  - {{kernel: log_returns}}
  - {{kernel: rolling_zscore, params: {{window: 50}}}}
signals:
  up: crosses_above(zscore, 1.0)
sinks:
  - {{kind: parquet, path: out/main.parquet, row_group_rows: 4096}}
  - {{kind: parquet, from: bars, path: out/bars.parquet, row_group_rows: 1024}}
state:
  backend: {backend}
  checkpoint: {{every: 3}}
executor: {{workers: 2, morsel_rows: 2000, progress: false}}
"""

ROWS = 60_000


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("graph_crash")
    for name, seed in (("coinbase", 11), ("kraken", 12)):
        write_simulated_parquet(d / f"{name}.parquet", rows=ROWS, symbols=6, seed=seed,
                                ticks_per_second=40, row_group_rows=5_000, batch_rows=5_000)
    return d


def _workdir(inputs: Path, name: str, backend: str) -> Path:
    d = inputs / name
    d.mkdir()
    (d / "job.yaml").write_text(JOB.format(backend=backend))
    for src in ("coinbase", "kraken"):
        (d / f"{src}.parquet").symlink_to(inputs / f"{src}.parquet")
    return d


def _comparable(table: pa.Table) -> pa.Table:
    """Timestamps as int64 with nulls as -1 (numpy's NaT never equals itself)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, pc.fill_null(table.column(i).cast(pa.int64()),
                                                             -1))
    return table


@pytest.fixture(scope="module")
def reference(inputs: Path) -> dict[str, pa.Table]:
    """The uninterrupted run (memory backend: no checkpoints at all)."""
    d = _workdir(inputs, "reference", "memory")
    with contextlib.chdir(d):
        assert main(["run", "job.yaml", "--quiet"]) == 0
    tables = {n: pq.read_table(d / "out" / f"{n}.parquet") for n in ("main", "bars")}
    assert tables["main"].num_rows == ROWS
    assert 0 < tables["bars"].num_rows < ROWS
    assert "close" in tables["main"].schema.names and "price_kraken" in \
        tables["main"].schema.names
    return tables


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["rocksdb", "tiledb"])
def test_a_sigkilled_graph_job_resumes_to_the_uninterrupted_output(
        inputs: Path, reference: dict[str, pa.Table], backend: str) -> None:
    cwd = _workdir(inputs, f"killed_{backend}", backend)
    rng = random.Random(backend)
    for rows in (6_000, 24_000):
        _kill_at(cwd, rows + rng.randrange(0, 6_000), rng)
    assert len(_checkpoints(cwd)) >= 2
    err = _finish(cwd)
    assert "resumed from checkpoint" in err
    for name, expected in reference.items():
        actual = pq.read_table(cwd / "out" / f"{name}.parquet")
        assert_tables_equal(_comparable(expected), _comparable(actual))
    # no recovery leftovers beside the outputs
    assert sorted(p.name for p in (cwd / "out").iterdir()) == ["bars.parquet", "main.parquet"]
