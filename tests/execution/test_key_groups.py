"""Kernel passes on rows grouped by key give the arrival-order outputs, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.execution.test_local_executor import core_job
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.runtime import pipeline
from tickflow.engine.runtime.key_groups import key_order
from tickflow.engine.testing import run_pipeline


@pytest.mark.parametrize(("rows", "n_keys"), [(5_000, 14), (5_000, 3_000), (100, 100_000),
                                              (1, 1), (0, 5)])
def test_key_order_is_a_stable_sort_by_key(rows, n_keys):
    gid = np.random.default_rng(rows).integers(0, n_keys, rows)
    order, where = key_order(gid, n_keys)
    np.testing.assert_array_equal(order, np.argsort(gid, kind="stable"))
    np.testing.assert_array_equal(order[where], np.arange(rows))


def cross_key_job(tmp_path: Path) -> object:
    """Per-key steps around a cross-key one (which must see every key's rows in arrival
    order, so it is never grouped)."""
    path = tmp_path / "job.yaml"
    path.write_text("""\
name: groups
mode: research
sources:
  - kind: simulator
    rows: 12000
    symbols: 5
    seed: 4
steps:
  - kernel: midprice
  - kernel: log_returns
    input: midprice
  - kernel: historical_cvar
    params: {window: 50}
  - kernel: hayashi_yoshida_corr
    params: {a: BTC-USD, b: ETH-USD, window: 60s}
  - kernel: sma
    input: hy_corr
    params: {window: 5s, min_periods: 10}
    output: hy_corr_5s
  - kernel: rolling_zscore
    params: {window: 30}
""")
    return compile_job(load_job(path))


def bits(table: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for name in table.column_names:
        a = table.column(name).to_numpy(zero_copy_only=False)
        out[name] = a.view(np.int64) if a.dtype == np.float64 else a
    return out


@pytest.mark.parametrize("make", [core_job, cross_key_job], ids=["core", "cross_key"])
def test_grouped_rows_give_the_arrival_order_outputs(tmp_path, monkeypatch, make):
    job = make(tmp_path, 12_000) if make is core_job else make(tmp_path)
    monkeypatch.setattr(pipeline, "GROUP_MIN_KEYS", 1)  # group batches of any key count
    grouped = run_pipeline(job, workers=1, morsel_rows=4_096)
    monkeypatch.setattr(pipeline, "GROUP_MIN_ROWS", 1 << 40)  # every batch in arrival order
    arrival = run_pipeline(job, workers=1, morsel_rows=4_096)
    assert grouped.schema == arrival.schema
    got, want = bits(grouped), bits(arrival)
    for name, values in want.items():
        assert (got[name] == values).all(), name
    assert np.isfinite(grouped.column("cvar").to_numpy()).sum() > 10_000
    if make is cross_key_job:
        assert np.isfinite(grouped.column("hy_corr_5s").to_numpy()).sum() > 1_000
