"""examples/ml: features -> `run-job train` -> scoring job, as the cookbook page runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.engine.cli import main

EXAMPLE = ROOT / "examples" / "ml"


def test_the_three_steps_of_the_ml_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROWS", "20000")
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    assert main(["run", str(EXAMPLE / "features.yaml"), "-q"]) == 0
    assert main(["train", str(EXAMPLE / "train.yaml"), "--set", "model.n_estimators=20"]) == 0
    assert "AUC" in capsys.readouterr().out
    assert (tmp_path / "models" / "rf_next_return.onnx").is_file()
    assert main(["run", str(EXAMPLE / "score.yaml"), "-q"]) == 0
    scored = pq.read_table(tmp_path / "out" / "ml_scored.parquet")
    p_up = scored.column("p_up").to_numpy()
    assert np.isfinite(p_up).sum() > 19_000
    long = scored.column("long").to_numpy()
    np.testing.assert_array_equal(long, (p_up > 0.6).astype(np.int8))
