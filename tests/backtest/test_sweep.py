"""Sweeps: points, overrides, the pure run_point, parallel runs, ranking and the warning."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.plan import build_plan
from tickflow.engine.backtest.run import evaluate, load_backtest_job, load_market_data, run_point
from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.sweep import (
    expand_points,
    expected_max_sharpe,
    expected_max_zscore,
    multiple_testing_warning,
    overrides_to_sets,
    rank,
)
from tickflow.engine.backtest.sweep_run import run_sweep
from tickflow.engine.cli import main
from tickflow.engine.loader import load_job

JOB = str(ROOT / "jobs" / "backtest.yaml")


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=40_000, symbols=4, seed=5)
    return path


def test_grid_and_random_points() -> None:
    grid = SweepSpec.model_validate({"parameters": {"a": [1, 2], "b": {"min": 0.5, "max": 1.0,
                                                                        "step": 0.25}}})
    assert expand_points(grid) == [{"a": 1, "b": 0.5}, {"a": 1, "b": 0.75}, {"a": 1, "b": 1.0},
                                   {"a": 2, "b": 0.5}, {"a": 2, "b": 0.75}, {"a": 2, "b": 1.0}]
    rnd = SweepSpec.model_validate({"method": "random", "samples": 50, "seed": 3,
                                    "parameters": {"a": [10, 20], "b": {"min": 1, "max": 2}}})
    points = expand_points(rnd)
    assert len(points) == 50 and points == expand_points(rnd)   # reproducible
    assert {p["a"] for p in points} == {10, 20}
    assert all(1 <= p["b"] <= 2 for p in points)


def test_overrides_become_set_paths_with_step_ids_resolved() -> None:
    strategy, steps = overrides_to_sets(JOB, {"entry_z": 1.5, "steps.rsi.params.period": 21,
                                              "strategy.execution.stop_loss": 0.02})
    assert strategy == ["strategy.params.entry_z=1.5", "strategy.execution.stop_loss=0.02"]
    assert len(steps) == 1 and steps[0].startswith("steps[")
    index = int(steps[0][len("steps["):steps[0].index("]")])
    step = load_job(JOB, overrides=steps).data["steps"][index]
    assert step["kernel"] == "rsi" and step["params"]["period"] == 21


def test_ranking_and_the_multiple_testing_warning() -> None:
    rows = [{"all.sharpe": 1.0}, {"all.sharpe": math.nan}, {"all.sharpe": 3.0},
            {"all.sharpe": -2.0}]
    assert [r["all.sharpe"] for r in rank(rows, "sharpe", "all")][:3] == [3.0, 1.0, -2.0]
    assert rank([{"all.fees_paid": 5}, {"all.fees_paid": 1}], "fees_paid", "all")[0] == \
        {"all.fees_paid": 1}
    # Bailey & Lopez de Prado: 100 trials over one year, z = 0.4228 * 2.3263 + 0.5772 * 2.6802
    assert expected_max_sharpe(100, 1.0) == pytest.approx(2.5306, abs=1e-3)
    assert expected_max_sharpe(100, 0.25) == pytest.approx(2 * 2.5306, abs=2e-3)
    text = multiple_testing_warning([{"train.elapsed_s": 365 * 86_400.0}] * 100, "train")
    assert "100 parameter points" in text and "about 2.53" in text and "out-of-sample" in text
    assert "annualised Sharpe of about 2.53" in text and "365.0 d" in text


def test_the_multiple_testing_warning_on_a_short_sample_names_the_period_sharpe() -> None:
    # 2.8 hours: summary.py shows no annualised figure, so neither does the warning; the
    # period Sharpe of a skill-less strategy is about standard normal whatever the length
    text = multiple_testing_warning([{"all.elapsed_s": 2.8 * 3600}] * 100, "all")
    assert "annualised" not in text
    assert "same 2.8 h would give a best Sharpe (period) of about 2.53" in text
    assert "too short to annualise" in text and "walk_forward" in text
    assert expected_max_zscore(100) == pytest.approx(2.5306, abs=1e-3)
    # one point, or no span: no bar at all, never a 0.00 or inf
    for rows in ([{"all.elapsed_s": 3600.0}], [{}] * 5):
        text = multiple_testing_warning(rows, "all")
        assert "Pure noise" not in text and "inf" not in text


def test_run_point_is_the_single_backtest_with_the_overrides(ticks: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    got = run_point(JOB, {"entry_z": 1.5, "entry_rsi": 35})["all"]
    job = load_backtest_job(JOB, ["strategy.params.entry_z=1.5",
                                  "strategy.params.entry_rsi=35"])
    plan = build_plan(job.spec.strategy)
    want = evaluate(job, load_market_data(job, plan), plan).metrics
    assert got == pytest.approx(want, nan_ok=True)
    assert got["trade_count"] > 0
    # a kernel parameter changes the features, and so the result
    other = run_point(JOB, {"steps.rsi.params.period": 5})["all"]
    assert other["trade_count"] != run_point(JOB, {})["all"]["trade_count"]
    split = run_point(JOB, {}, train_fraction=0.6)
    assert set(split) == {"train", "test"}
    assert split["train"]["elapsed_s"] == pytest.approx(1.5 * split["test"]["elapsed_s"],
                                                        rel=0.01)


def test_sweep_runs_in_parallel_processes_and_ranks(ticks: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    assert main([JOB, "--sweep", "--workers", "2", "--set", "sweep.pool=processes",
                 "--set", "sweep.parameters.entry_z=[1.5, 2.5]",
                 "--set", "sweep.parameters.entry_rsi=[30, 40]"]) == 0
    out = capsys.readouterr().out
    assert "4 points" in out and "on 2 processes" in out and "multiple testing" in out
    table = pq.read_table(tmp_path / "backtest-meanrev_sweep.parquet").to_pylist()
    assert len(table) == 4
    sharpe = [r["train.sharpe"] for r in table]
    assert sharpe == sorted(sharpe, reverse=True)
    assert {(r["entry_z"], r["entry_rsi"]) for r in table} == {(1.5, 30), (1.5, 40),
                                                               (2.5, 30), (2.5, 40)}
    assert all("test.total_return" in r for r in table)
    html = (tmp_path / "backtest-meanrev_sweep.html").read_text()
    assert "multiple testing" in html


def test_threads_give_the_same_table_as_one_by_one(ticks: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKS", str(ticks))
    sweep = SweepSpec.model_validate({"parameters": {"entry_z": [1.5, 2.0, 2.5]},
                                      "walk_forward": {"train_fraction": 0.5}})
    threads = run_sweep(JOB, sweep, workers=2, pool="threads")
    sequential = run_sweep(JOB, sweep, workers=1)
    def plain(rows: list[dict]) -> list[dict]:
        return [{k: ("nan" if v != v else v) for k, v in r.items()} for r in rows]

    assert plain(threads) == plain(sequential)
    assert [r["entry_z"] for r in threads] != [] and "test.sharpe" in threads[0]
