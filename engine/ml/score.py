"""``kernel: model_score``: a trained model's score for every row, as a new column.

```yaml
model_paths: [models]                 # the only directories model files may come from
steps:
  - id: rf_score
    kernel: model_score
    params:
      path: models/rf_next_return.joblib     # or .onnx
      features: [zscore, rsi, l1_imbalance]  # must be the model's feature names, in order
    output: p_up
signals:
  long: p_up > 0.6
```
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tickflow.engine.ml.batch import BatchFn, BindContext, batch_kernel
from tickflow.engine.ml.models import ModelFormat, ScoreKind, check_features, load_model
from tickflow.kernels.base import Params


class ModelScoreParams(Params):
    """Which model to load, on which columns, and which of its outputs becomes the score."""

    path: str = Field(min_length=1, description="model file: .joblib/.pkl (scikit-learn) or "
                                                ".onnx; must lie under the job's model_paths")
    features: list[str] = Field(min_length=1,
                                description="input columns, in the model's feature order")
    format: ModelFormat = Field("auto", description="auto (by file suffix) | joblib | onnx")
    score: ScoreKind = Field("probability",
                             description="probability of positive_class, or the prediction")
    positive_class: int | str | None = Field(
        None, description="class whose probability is the score (default: the last class)")


@batch_kernel("model_score", params=ModelScoreParams, inputs=("features...",),
              outputs=("score",), input_names=lambda p: list(p.features),
              formula="model.predict_proba(features)[:, positive_class] (or predict); NaN "
                      "where a feature is NaN")
def model_score(params: ModelScoreParams, input_columns: tuple[str, ...],
                context: BindContext) -> BatchFn:
    """Score each row with a trained scikit-learn (joblib) or ONNX model.

    Not a numba kernel: a batch step, run after the numba steps on whole batches; no keyed
    state, so the score of a row depends on that row alone and batching never changes it.
    A row with any NaN feature scores NaN and is not passed to the model. The model is loaded
    and its feature names checked against ``features`` when the job compiles. Loading a pickled
    model runs code: only files under the job's ``model_paths`` are loaded.
    """
    model = load_model(params.path, context.model_paths, params.format, params.score,
                       params.positive_class)
    check_features(model, params.features)

    def score(columns: list[np.ndarray]) -> list[np.ndarray]:
        n = columns[0].shape[0]
        out = np.full(n, np.nan)
        if n == 0:
            return [out]
        x = np.column_stack(columns)
        ok = ~np.isnan(x).any(axis=1)
        if ok.all():
            out[:] = model.score(list(columns))
        elif ok.any():
            out[ok] = model.score([np.ascontiguousarray(c[ok]) for c in columns])
        return [out]

    return score
