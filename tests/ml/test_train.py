"""`run-job train`: the next-return target, the time-ordered split, the model and its report."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.ml.conftest import FEATURES, Trained
from tickflow.engine.cli import main
from tickflow.engine.train import next_return


def test_next_return_is_per_key_and_in_order() -> None:
    keys = np.array([0, 1, 0, 0, 1, 0, 1])
    rets = np.array([0.1, 1.0, 0.2, np.nan, 2.0, 0.4, 3.0])
    fwd, end = next_return(keys, rets, 1)
    np.testing.assert_array_equal(fwd, [0.2, 2.0, np.nan, 0.4, 3.0, np.nan, np.nan])
    np.testing.assert_array_equal(end, [2, 4, -1, 5, 6, -1, -1])
    fwd2, end2 = next_return(keys, rets, 2)
    np.testing.assert_allclose(fwd2, [np.nan, 5.0, np.nan, np.nan, np.nan, np.nan, np.nan])
    assert end2[1] == 6


def test_report_has_accuracy_auc_and_importances(trained: Trained) -> None:
    r = trained.report
    assert r.train_rows > 1000 and r.test_rows > 500
    assert 0.0 <= r.accuracy <= 1.0 and r.auc is not None and 0.0 <= r.auc <= 1.0
    assert set(r.feature_importances) == set(FEATURES)
    assert sum(r.feature_importances.values()) == pytest.approx(1.0)
    saved = json.loads(trained.model.with_suffix(".report.json").read_text())
    assert saved["accuracy"] == r.accuracy and saved["features"] == FEATURES
    md = trained.model.with_suffix(".report.md").read_text()
    assert "| AUC |" in md and "| zscore |" in md


def test_the_split_is_in_time_with_no_overlap(trained: Trained) -> None:
    r = trained.report
    assert r.train_span[1] < r.test_span[0]  # ISO strings compare in time order
    table = pq.read_table(trained.data)
    n = table.num_rows
    # about 70% of the usable rows before the cut; none shuffled in from the future
    assert r.train_rows < 0.7 * n and r.test_rows < 0.3 * n + 10
    assert r.embargoed_rows >= 0


def test_the_model_remembers_its_features(trained: Trained) -> None:
    model = joblib.load(trained.model)
    assert list(model.feature_names_in_) == FEATURES
    assert model.n_jobs == 1


def test_train_command(trained: Trained, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "train.yaml"
    spec.write_text(f"name: cli\ndata: {trained.data}\nfeatures: [zscore, rsi]\n"
                    f"model: {{n_estimators: 5, max_depth: 3}}\n"
                    f"output: {tmp_path / 'm.joblib'}\n")
    assert main(["train", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained on ") and "AUC" in out
    assert (tmp_path / "m.joblib").is_file() and (tmp_path / "m.report.md").is_file()


def test_a_bad_train_spec_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.yaml").write_text("name: bad\ndata: x.parquet\nfeatures: [a]\n"
                                         "test_fraction: 1.5\noutput: m.joblib\n")
    assert main(["train", "train.yaml"]) == 2
    assert capsys.readouterr().err == (
        "train.yaml:4:16: test_fraction: expected a value < 1.0, found 1.5\n")
    (tmp_path / "train.yaml").write_text("name: bad\ndata: x.parquet\nfeatures: [a]\n"
                                         "output: m.joblib\n")
    assert main(["train", "train.yaml"]) == 1
    assert "train: cannot read data 'x.parquet'" in capsys.readouterr().err
