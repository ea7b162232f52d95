"""The local executor: same output for any worker count and morsel size, in input order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.testing import run_pipeline

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def core_job(tmp_path: Path, rows: int) -> object:
    text = f"""\
name: invariance
mode: research
sources:
  - kind: simulator
    rows: {rows}
    symbols: 5
    seed: 3
include: [{JOBS / 'features' / 'core.yaml'}]
signals:
  buy: zscore < -2.0 and rsi < 30
  regime_change: cusum_alarm == 1
"""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return compile_job(load_job(path))



@pytest.fixture(scope="module")
def job_and_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, pa.Table]:
    job = core_job(tmp_path_factory.mktemp("inv"), 12_000)
    return job, run_pipeline(job, workers=1, morsel_rows=100_000)


def assert_tables_equal(reference: pa.Table, got: pa.Table) -> None:
    assert got.schema == reference.schema
    for name in reference.column_names:
        a = reference.column(name).to_numpy(zero_copy_only=False)
        b = got.column(name).to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert (a == b).all(), name


@pytest.mark.parametrize(("workers", "morsel_rows"), [(2, 65_536), (2, 777), (3, 1_000),
                                                      (4, 4_096)])
def test_identical_for_any_worker_count_and_morsel_size(job_and_reference: tuple[object, pa.Table],
                                                        workers: int, morsel_rows: int) -> None:
    job, reference = job_and_reference
    assert_tables_equal(reference, run_pipeline(job, workers, morsel_rows))


@pytest.mark.parametrize(("workers", "morsel_rows"), [(1, 1), (2, 7)])
def test_tiny_morsels(tmp_path: Path, workers: int, morsel_rows: int) -> None:
    job = core_job(tmp_path, 500)
    assert_tables_equal(run_pipeline(job, 1, 10_000), run_pipeline(job, workers, morsel_rows))


def test_output_keeps_input_order_and_adds_forty_feature_columns(
        job_and_reference: tuple[object, pa.Table]) -> None:
    job, reference = job_and_reference
    src_use = job.sources[0]
    source = src_use.definition.cls(src_use.config, job.context)
    raw = pa.Table.from_batches(list(source.batches(None, 100_000)))
    for name in raw.column_names:
        assert reference.column(name).equals(raw.column(name)), name
    features = [c for c in reference.column_names if c not in raw.column_names]
    assert len(features) >= 40
    assert len(job.steps) >= 26
