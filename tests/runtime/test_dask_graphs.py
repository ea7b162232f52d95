"""Graphs on Dask: a multi-timeframe graph keyed by the job's key splits by key and equals the
local run; a graph with a cross-key step runs in one task and says which step made it so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.dask import run_dask
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job

JOB = """\
name: mtf-dask
mode: research
sources:
  - {{id: ticks, kind: parquet, path: {ticks}}}
steps:
  - {{id: bars_1m, operator: resample_ohlc, params: {{interval: 1m}},
     outputs: [bar_start_1m, bar_end_1m, open_1m, high_1m, low_1m, close_1m, volume_1m,
               vwap_1m, trades_1m]}}
  - {{id: minute_ema, kernel: ema, input: close_1m, params: {{span: 10}}, output: ema_1m}}
  - {{id: with_1m, operator: asof_join, from: ticks, params: {{right: bars_1m}}}}
  - {{kernel: log_returns}}
{extra}signals:
  above: price > ema_1m
sinks:
  - {{kind: parquet, path: {out}/main.parquet}}
  - {{kind: parquet, from: bars_1m, path: {out}/bars.parquet}}
"""

CROSS = """\
  - {kernel: hayashi_yoshida_corr, params: {a: BTC-USD, b: ETH-USD, window: 30s}}
"""

ROWS = 30_000


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dask_graphs") / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=6, seed=9, ticks_per_second=20)
    return path


def _compiled(tmp_path: Path, ticks: Path, out: str, extra: str = "") -> Any:
    path = tmp_path / f"{out}.yaml"
    path.write_text(JOB.format(ticks=ticks, out=tmp_path / out, extra=extra))
    return compile_job(load_job(str(path)))


def _by_key(path: Path) -> pa.Table:
    """Rows grouped by symbol, each key's rows in their order (what partitioning keeps)."""
    table = pq.read_table(path).replace_schema_metadata(None)
    table = table.append_column("__row", pa.array(np.arange(table.num_rows)))
    return table.sort_by([("symbol", "ascending"), ("__row", "ascending")]).drop_columns(
        ["__row"])


def _same(expected: pa.Table, got: pa.Table) -> None:
    assert got.schema == expected.schema and got.num_rows == expected.num_rows
    for name in expected.column_names:
        a, b = expected.column(name), got.column(name)
        if pa.types.is_timestamp(a.type):
            a, b = pc.fill_null(a.cast(pa.int64()), -1), pc.fill_null(b.cast(pa.int64()), -1)
        x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert (x == y).all(), name


def test_a_multi_timeframe_graph_splits_by_key_and_equals_the_local_run(
        tmp_path: Path, ticks: Path, client: Any) -> None:
    local = run_local(_compiled(tmp_path, ticks, "local"), workers=1)
    summary = run_dask(_compiled(tmp_path, ticks, "dask"), client=client, partitions=3)
    assert summary.partitions == 3 and summary.single_task_reason is None
    keys = [k for part in summary.parts for k in part.keys]
    assert len(keys) == len(set(keys)) == 6  # every key in exactly one task
    assert summary.rows == local.rows
    assert summary.signal_counts == local.signal_counts and local.signal_counts["above"] > 0
    for name in ("main", "bars"):
        _same(_by_key(tmp_path / "local" / f"{name}.parquet"),
              _by_key(tmp_path / "dask" / f"{name}.parquet"))
    assert 0 < pq.read_table(tmp_path / "dask" / "bars.parquet").num_rows < ROWS


def test_a_cross_key_step_runs_the_graph_in_one_task_and_says_so(
        tmp_path: Path, ticks: Path, client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = run_local(_compiled(tmp_path, ticks, "local", CROSS), workers=1)
    summary = run_dask(_compiled(tmp_path, ticks, "dask", CROSS), client=client, partitions=3)
    assert summary.partitions == 1
    assert summary.single_task_reason is not None
    assert "step 'hayashi_yoshida_corr' (hayashi_yoshida_corr) reads several keys' rows" in \
        summary.single_task_reason
    assert "runs in one dask task" in capsys.readouterr().err
    main_local = pq.read_table(tmp_path / "local" / "main.parquet").replace_schema_metadata(None)
    main_dask = pq.read_table(tmp_path / "dask" / "main.parquet").replace_schema_metadata(None)
    _same(main_local, main_dask)  # one task: even the row order is the local one
    assert summary.rows == local.rows
