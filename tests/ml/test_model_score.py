"""`kernel: model_score`: compile-time checks, and the same scores however rows are batched."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.ml.conftest import FEATURES, Trained, research_job
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.errors import CompileError
from tickflow.engine.executors.local import Pipeline, run_local
from tickflow.engine.loader import load_job


def score_steps(model: Path, features: list[str] = FEATURES, step_id: str = "rf",
                output: str = "p_up") -> str:
    return (f"  - id: {step_id}\n    kernel: model_score\n"
            f"    params: {{path: {model}, features: [{', '.join(features)}]}}\n"
            f"    output: {output}\n")


def scoring_job(trained: Trained, tmp_path: Path, model_paths: str | None = None,
                steps: str | None = None, rows: int = 8000) -> Path:
    job = research_job(tmp_path / "score.yaml", rows, 9, tmp_path / "scored.parquet",
                       (steps if steps is not None else score_steps(trained.model)
                        + score_steps(trained.onnx, step_id="rf_onnx", output="p_up_onnx"))
                       + "signals:\n  long: p_up > 0.52\n")
    allowed = model_paths if model_paths is not None else str(trained.model.parent)
    job.write_text(f"model_paths: [{allowed}]\n" + job.read_text())
    return job


def test_scores_in_a_research_job_match_the_model(trained: Trained, tmp_path: Path) -> None:
    job = compile_job(load_job(scoring_job(trained, tmp_path)))
    summary = run_local(job, workers=2, morsel_rows=1500)
    table = pq.read_table(tmp_path / "scored.parquet")
    p_up = table.column("p_up").to_numpy()
    x = np.column_stack([table.column(f).to_numpy(zero_copy_only=False) for f in FEATURES])
    ok = ~np.isnan(x).any(axis=1)
    assert np.isnan(p_up[~ok]).all() and (~ok).sum() > 0  # NaN features -> NaN score
    model = joblib.load(trained.model)
    direct = model.predict_proba(pa.table({f: x[ok, i] for i, f in enumerate(FEATURES)}))[:, 1]
    np.testing.assert_array_equal(p_up[ok], direct)
    assert 0.0 < p_up[ok].min() < p_up[ok].max() < 1.0
    # the ONNX copy scores the same rows (float32 inside, so to about 1e-6)
    np.testing.assert_allclose(table.column("p_up_onnx").to_numpy(), p_up, atol=1e-5)
    assert summary.signal_counts["long"] == int((p_up[ok] > 0.52).sum())


def test_live_batches_give_the_same_scores_as_one_batch(trained: Trained,
                                                        tmp_path: Path) -> None:
    job = compile_job(load_job(scoring_job(trained, tmp_path, rows=5000)))
    source = job.sources[0].definition.cls(job.sources[0].config, job.context)
    table = pa.Table.from_batches(list(source.batches(None, 5000)))
    whole = Pipeline(job, workers=1).process(table.combine_chunks().to_batches()[0])
    live = Pipeline(job, workers=2)
    parts = [live.process(b) for b in table.to_batches(max_chunksize=317)]
    live.close()
    streamed = pa.Table.from_batches(parts)
    for name in ("p_up", "p_up_onnx", "long", "zscore"):
        np.testing.assert_array_equal(streamed.column(name).to_numpy(),
                                      whole.column(name).to_numpy(), err_msg=name)


def test_a_model_outside_the_allowed_paths_is_refused(trained: Trained, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(CompileError) as err:
        compile_job(load_job(scoring_job(trained, tmp_path, model_paths=str(other))))
    problem = err.value.problems[0]
    assert (problem.line, problem.path) == (17, "steps[4].params.path")
    assert "is outside the directories the job allows in `model_paths:`" in problem.message
    assert "loading a pickled model runs code" in problem.message
    assert problem.message.endswith("(step 'rf', kernel model_score)")


def test_no_model_paths_means_no_model_is_loaded(trained: Trained, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    job = scoring_job(trained, tmp_path)
    job.write_text(job.read_text().split("\n", 1)[1])  # drop the model_paths line
    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    assert "(none are listed)" in err and "Traceback" not in err


def test_a_symlink_out_of_the_allowed_paths_is_refused(trained: Trained, tmp_path: Path) -> None:
    allowed = tmp_path / "models"
    allowed.mkdir()
    (allowed / "rf.joblib").symlink_to(trained.model)
    job = scoring_job(trained, tmp_path, model_paths=str(allowed),
                      steps=score_steps(allowed / "rf.joblib"))
    with pytest.raises(CompileError, match="is outside the directories"):
        compile_job(load_job(job))


@pytest.mark.parametrize(("features", "message"), [
    (["rsi", "zscore", "log_return", "l1_imbalance"],
     "the model was trained on these columns in another order: zscore, rsi, log_return, "
     "l1_imbalance"),
    (["zscore", "rsi", "log_return"],
     "features do not match the model's (missing l1_imbalance); the model was trained on "
     "zscore, rsi, log_return, l1_imbalance"),
    (["zscore", "rsi", "log_return", "l1_imbalance", "price"],
     "features do not match the model's (not in the model: price)"),
])
def test_feature_names_are_checked_at_compile_time(trained: Trained, tmp_path: Path,
                                                   features: list[str], message: str) -> None:
    for model in (trained.model, trained.onnx):  # ONNX keeps the names in its metadata
        job = scoring_job(trained, tmp_path, steps=score_steps(model, features))
        with pytest.raises(CompileError) as err:
            compile_job(load_job(job))
        problem = err.value.problems[0]
        assert problem.path == "steps[4].params.features"
        assert message in problem.message


def test_a_feature_column_that_does_not_exist_is_located(trained: Trained,
                                                         tmp_path: Path) -> None:
    model = trained.root / "models" / "two.joblib"
    from sklearn.ensemble import RandomForestClassifier

    clf = RandomForestClassifier(n_estimators=2, random_state=0)
    clf.fit(pa.table({"zscore": [0.0, 1.0, 2.0], "rsii": [1.0, 0.0, 1.0]}), [0, 1, 0])
    joblib.dump(clf, model)
    job = scoring_job(trained, tmp_path, steps=score_steps(model, ["zscore", "rsii"]))
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job))
    assert "missing column 'rsii' for input 'rsii' of step 'rf'" in str(err.value)
    assert "did you mean 'rsi'?" in str(err.value)


def test_a_kernel_cannot_read_a_score(trained: Trained, tmp_path: Path) -> None:
    steps = score_steps(trained.model) + "  - kernel: ewma\n    input: p_up\n"
    with pytest.raises(CompileError) as err:
        compile_job(load_job(scoring_job(trained, tmp_path, steps=steps)))
    assert "step 'ewma' reads 'p_up' from batch step 'rf', but kernels run before batch " \
           "steps" in str(err.value)


def test_a_file_that_is_not_a_model_is_refused(trained: Trained, tmp_path: Path) -> None:
    bogus = trained.root / "models" / "not_a_model.joblib"
    joblib.dump({"weights": [1, 2]}, bogus)
    with pytest.raises(CompileError, match="holds a dict, not a model with predict"):
        compile_job(load_job(scoring_job(trained, tmp_path, steps=score_steps(bogus))))


def test_model_score_is_listed_with_the_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernels", "--json"]) == 0
    table = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    ms = table["model_score"]
    assert ms["kind"] == "batch" and ms["outputs"] == ["score"]
    assert [p["name"] for p in ms["params"]][:2] == ["path", "features"]
