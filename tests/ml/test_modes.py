"""model_score in a backtest and in a live replay: the same scores as the research run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.ml.conftest import FEATURE_STEPS, FEATURES, Trained
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job

ROWS = 12_000


def score_step(trained: Trained) -> str:
    return ("  - id: rf\n    kernel: model_score\n"
            f"    params: {{path: {trained.model}, features: [{', '.join(FEATURES)}]}}\n"
            "    output: p_up\n")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=3, seed=21)
    return path


@pytest.fixture(scope="module")
def research_scores(trained: Trained, capture: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    root = tmp_path_factory.mktemp("research")
    job = root / "research.yaml"
    job.write_text(f"name: research-scores\nmode: research\nmodel_paths: [{trained.model.parent}]\n"
                   f"sources:\n  - kind: parquet\n    path: {capture}\n" + FEATURE_STEPS
                   + score_step(trained)
                   + f"sinks:\n  - kind: parquet\n    path: {root / 'out.parquet'}\n")
    run_local(compile_job(load_job(job)), workers=2, morsel_rows=4096)
    scores = pq.read_table(root / "out.parquet").column("p_up").to_numpy()
    assert np.isfinite(scores).sum() > 0.9 * ROWS
    return scores


def test_model_score_drives_a_backtest(trained: Trained, capture: Path, tmp_path: Path,
                                       research_scores: np.ndarray) -> None:
    from tickflow.engine.backtest.run import load_backtest_job, run_backtest

    threshold = float(np.nanquantile(research_scores, 0.8))
    job = tmp_path / "backtest.yaml"
    job.write_text(
        f"name: ml-backtest\nmode: backtest\nmodel_paths: [{trained.model.parent}]\n"
        f"sources:\n  - kind: parquet\n    path: {capture}\n" + FEATURE_STEPS
        + score_step(trained)
        + "strategy:\n"
          f"  long: {{entry: p_up > {threshold}, exit: p_up < 0.5}}\n"
          "  sizing: {method: fixed_notional, notional: 1000}\n"
          "  execution: {fees: {taker_bps: 0, maker_bps: 0}, slippage_bps: 0}\n"
          "  grid: 10s\n"
          f"  output_dir: {tmp_path / 'out'}\n")
    backtest = run_backtest(load_backtest_job(str(job)))
    np.testing.assert_array_equal(backtest.data.columns["p_up"], research_scores)
    assert len(next(iter(backtest.result.trades.values()))) > 0


@pytest.mark.slow
def test_model_score_in_a_live_replay(trained: Trained, capture: Path, tmp_path: Path,
                                      research_scores: np.ndarray,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    out = tmp_path / "live.parquet"
    job = tmp_path / "live.yaml"
    job.write_text(
        f"name: ml-live\nmode: live\nmodel_paths: [{trained.model.parent}]\n"
        "sources:\n  - kind: kafka\n    bootstrap: embedded\n"
        f"    topic: ml-live-ticks\n    group_id: ml-live\n    start_offset: earliest\n"
        "    batch_size: 1000\n" + FEATURE_STEPS + score_step(trained)
        + "signals:\n  long: p_up > 0.55\n"
        + f"sinks:\n  - kind: parquet\n    path: {out}\n")
    code = main([str(job), "--replay", str(capture), "--speed", "max"])
    text = capsys.readouterr().out
    assert code == 0, text
    live = pq.read_table(out)
    assert live.num_rows == ROWS
    # the live run cut the stream into many batches; the scores are the research run's
    np.testing.assert_array_equal(live.column("p_up").to_numpy(), research_scores)
