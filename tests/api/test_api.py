"""The Python API as a notebook uses it: load, validate, run on any kind of ticks, stream,
backtest; results as Arrow, pandas and polars, and as HTML."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tickflow as tf
from tests.conftest import ROOT


def test_public_api_is_listed_in_one_place_and_typed() -> None:
    assert set(tf.__all__) >= {"load_job", "run", "stream", "backtest", "Job", "Result",
                               "BacktestResult", "__version__"}
    for name in tf.__all__:
        assert getattr(tf, name) is not None, name
    assert (Path(tf.__file__).parent / "py.typed").is_file()
    assert tf.run.__annotations__["return"] == "Result"


def test_load_job_applies_overrides_by_step_id(research_job: Path) -> None:
    job = tf.load_job(research_job, set={"steps.sma_slow.params.window": 30,
                                         "executor.workers": 1})
    steps = job.data["steps"]
    slow = next(s for s in steps if s.get("id") == "sma_slow")
    assert slow["params"]["window"] == 30
    assert job.data["executor"]["workers"] == 1
    assert "crypto-research" in repr(job) and "sma_slow" in job._repr_html_()
    typed = tf.load_job(research_job, set={"report.grid": "1", "executor.workers": 2})
    assert typed.data["report"]["grid"] == "1" and typed.data["executor"]["workers"] == 2


def test_unknown_step_id_is_a_located_error(research_job: Path) -> None:
    with pytest.raises(tf.TickflowError) as info:
        tf.load_job(research_job, set={"steps.nope.params.window": 3})
    text = str(info.value)
    assert "no item with id 'nope'" in text and "sma_slow" in text


def test_validate_raises_or_returns_located_problems(tmp_path: Path, sim_ticks: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nmode: research\nsources: [{{kind: parquet, path: {sim_ticks}}}]\n"
                   "steps:\n  - kernel: ewmaa\n")
    job = tf.load_job(bad)
    with pytest.raises(tf.TickflowError):
        job.validate()
    problems = job.validate(raise_errors=False)
    assert len(problems) == 1
    assert problems[0].file == str(bad) and problems[0].line == 5
    assert "unknown kernel 'ewmaa'" in problems[0].message
    good = tf.load_job(ROOT / "jobs" / "research.yaml", set={"sources[0].path": str(sim_ticks)})
    assert good.validate() == []


def _ticks_inputs(sim_ticks: Path) -> dict[str, object]:
    table = pq.read_table(sim_ticks)
    import pandas
    import polars

    assert isinstance(table.to_pandas(), pandas.DataFrame)
    return {"path": str(sim_ticks), "arrow": table, "pandas": table.to_pandas(),
            "polars": polars.from_arrow(table),
            "batches": iter(table.to_batches(max_chunksize=1_000))}


def test_run_takes_every_kind_of_ticks_and_gives_the_same_table(research_job: Path,
                                                                 sim_ticks: Path) -> None:
    job = tf.load_job(research_job)
    tables = {}
    for kind, ticks in _ticks_inputs(sim_ticks).items():
        result = tf.run(job, ticks=ticks, sinks=False, workers=1)
        assert result.table.num_rows == 6_000, kind
        tables[kind] = result.table
        assert result.signal_counts.keys() == {"buy", "sell", "regime_change"}
    reference = tables["path"]
    assert "zscore" in reference.column_names and len(reference.column_names) == 55
    for kind, table in tables.items():
        np.testing.assert_array_equal(table.column("zscore").to_numpy(),
                                      reference.column("zscore").to_numpy(), err_msg=kind)


def test_result_converts_and_renders(research_job: Path, sim_ticks: Path,
                                     tmp_path: Path) -> None:
    job = tf.load_job(research_job, set={"sinks[0].path": str(tmp_path / "f.parquet"),
                                         "report.path": str(tmp_path / "r.html")})
    result = tf.run(job, ticks=sim_ticks, workers=1)
    frame = result.to_pandas()
    assert frame.shape == (6_000, 55)
    assert result.to_polars().shape == (6_000, 55)
    assert isinstance(result.table, pa.Table)
    assert any("parquet: 6,000 rows" in s for s in result.sink_summaries)
    assert (tmp_path / "f.parquet").is_file() and (tmp_path / "r.html").is_file()
    page = result._repr_html_()
    assert "<table>" in page and "6,000" in page and "signal buy" in page


def test_bad_ticks_get_a_clear_error(research_job: Path) -> None:
    with pytest.raises(tf.TickflowError, match="expected a Parquet path"):
        tf.run(research_job, ticks=42)
    with pytest.raises(tf.TickflowError, match="no such file"):
        tf.run(research_job, ticks="/nonexistent/ticks.parquet")
    with pytest.raises(tf.TickflowError, match="item 0 of the iterator is a int"):
        tf.run(research_job, ticks=iter([1, 2]))


def test_stream_yields_batches_as_they_are_computed(research_job: Path,
                                                    sim_ticks: Path) -> None:
    job = tf.load_job(research_job, set={"executor.morsel_rows": 1_000})
    batches = list(tf.stream(job, ticks=sim_ticks, workers=1))
    assert len(batches) == 6 and sum(b.num_rows for b in batches) == 6_000
    assert all("zscore" in b.schema.names for b in batches)
    # leaving the loop early stops the run
    first = list(itertools.islice(tf.stream(job, ticks=sim_ticks, workers=1), 2))
    assert [b.num_rows for b in first] == [1_000, 1_000]


def test_backtest_returns_metrics_tables_and_writes_the_report(sim_ticks: Path,
                                                               tmp_path: Path) -> None:
    bt = tf.backtest(ROOT / "jobs" / "backtest.yaml", ticks=sim_ticks, workers=1)
    assert {"total_return", "sharpe", "max_drawdown"} <= set(bt.metrics)
    assert isinstance(bt.trades, pa.Table) and isinstance(bt.equity, pa.Table)
    assert bt.equity.num_rows > 0
    assert bt.trades_pandas().shape[0] == bt.trades.num_rows
    page = bt._repr_html_()
    assert "buy and hold" in page and "sharpe" in page
    written = bt.report(str(tmp_path / "bt.html"))
    assert Path(written).read_text().lstrip().lower().startswith("<!doctype html")


def test_run_a_multi_stream_job_returns_its_main_stream(sim_ticks: Path) -> None:
    job = tf.load_job(ROOT / "jobs" / "examples" / "multi_timeframe.yaml",
                      set={"sources[0].path": str(sim_ticks)})
    result = tf.run(job, sinks=False, workers=1)
    assert result.table.num_rows == 6_000  # bars joined back onto every tick
    assert result.table.column_names == job.output_columns
    assert set(result.signal_counts) == set(job.data["signals"])
