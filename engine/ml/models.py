"""Loading trained models for ``model_score``: scikit-learn (joblib) and ONNX (onnxruntime).

**Loading a pickled model executes code.** A joblib/pickle file can run anything when it is
loaded, so a job only loads model files that lie under a directory it lists in ``model_paths``
(symlinks resolved); anything else is refused before the file is opened. ONNX files hold no
code, but they go through the same check.

Every model is wrapped as a :class:`Model`: the feature names it was trained on (when the file
records them) and a ``score(columns)`` that returns one float64 per row. Scores must not depend
on how rows are cut into batches, so each model runs single-threaded and row-wise math only.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tickflow.engine.ml.batch import BatchBindError

ModelFormat = Literal["auto", "joblib", "onnx"]
ScoreKind = Literal["probability", "prediction"]

FEATURES_META = "tickflow_feature_names"
"""ONNX metadata key holding the JSON list of feature names (written by ``run-job train``)."""


def allowed_model_file(path: str, model_paths: Sequence[str]) -> Path:
    """The resolved model file, if it lies under one of ``model_paths``.

    Raises:
        BatchBindError: outside the allowed directories, or missing.
    """
    file = Path(path).expanduser().resolve()
    roots = [Path(p).expanduser().resolve() for p in model_paths]
    if not any(file == r or file.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots) if roots else "none are listed"
        raise BatchBindError(
            f"model file {str(file)!r} is outside the directories the job allows in "
            f"`model_paths:` ({allowed}); loading a pickled model runs code, so list the "
            f"directory of models you trust", "path")
    if not file.is_file():
        raise BatchBindError(f"no such model file: {str(file)!r}", "path")
    return file


@dataclass
class Model:
    """A loaded model: what it expects and how it scores a batch."""

    path: Path
    format: str
    feature_names: list[str] | None
    n_features: int | None
    impl: Any
    score_kind: ScoreKind
    positive_index: int = -1

    def score(self, columns: list[np.ndarray]) -> np.ndarray:
        if self.format == "onnx":
            return self._score_onnx(columns)
        return self._score_sklearn(columns)

    def _score_sklearn(self, columns: list[np.ndarray]) -> np.ndarray:
        model = self.impl
        if self.feature_names is not None:
            import pyarrow as pa

            x: Any = pa.table(dict(zip(self.feature_names, columns, strict=True)))
        else:
            x = np.column_stack(columns)
        if self.score_kind == "probability":
            return np.asarray(model.predict_proba(x)[:, self.positive_index], dtype=np.float64)
        return np.asarray(model.predict(x), dtype=np.float64)

    def _score_onnx(self, columns: list[np.ndarray]) -> np.ndarray:
        session = self.impl
        inputs = session.get_inputs()
        if len(inputs) == 1:
            dtype = np.float32 if inputs[0].type == "tensor(float)" else np.float64
            feed = {inputs[0].name: np.column_stack(columns).astype(dtype)}
        else:  # one input per feature
            feed = {}
            for spec, col in zip(inputs, columns, strict=True):
                dtype = np.float32 if spec.type == "tensor(float)" else np.float64
                feed[spec.name] = col.astype(dtype).reshape(-1, 1)
        outputs = session.get_outputs()
        names = [o.name for o in outputs]
        if self.score_kind == "probability":
            name = next((n for n in names if "prob" in n.lower()), names[-1])
            result = session.run([name], feed)[0]
            if isinstance(result, list):  # a ZipMap output: one {class: p} dict per row
                return np.array([list(r.values())[self.positive_index] for r in result],
                                dtype=np.float64)
            result = np.asarray(result)
            if result.ndim == 2:
                return result[:, self.positive_index].astype(np.float64)
            return result.astype(np.float64)
        result = np.asarray(session.run([names[0]], feed)[0])
        return result.reshape(result.shape[0], -1)[:, 0].astype(np.float64)


def load_model(path: str, model_paths: Sequence[str], fmt: ModelFormat = "auto",
               score_kind: ScoreKind = "probability",
               positive_class: Any = None) -> Model:
    """Load a model file the job allows; raises BatchBindError with the parameter at fault."""
    file = allowed_model_file(path, model_paths)
    if fmt == "auto":
        fmt = "onnx" if file.suffix.lower() == ".onnx" else "joblib"
    if fmt == "onnx":
        return _load_onnx(file, score_kind, positive_class)
    return _load_joblib(file, score_kind, positive_class)


def _load_joblib(file: Path, score_kind: ScoreKind, positive_class: Any) -> Model:
    try:
        import joblib
    except ImportError as exc:
        raise BatchBindError("scikit-learn models need the `ml` extra: "
                             "pip install 'tickflow[ml]'", "path") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a model pickled by another sklearn version
            model = joblib.load(file)
    except Exception as exc:  # not a joblib file, or a class that is not installed
        raise BatchBindError(f"cannot load model file {str(file)!r}: "
                             f"{type(exc).__name__}: {exc}", "path") from exc
    if not hasattr(model, "predict"):
        raise BatchBindError(f"{str(file)!r} holds a {type(model).__name__}, not a model "
                             f"with predict()", "path")
    if hasattr(model, "n_jobs"):
        model.n_jobs = 1  # threaded tree averaging would make scores depend on timing
    names = getattr(model, "feature_names_in_", None)
    n = getattr(model, "n_features_in_", None)
    index = -1
    if score_kind == "probability":
        if not hasattr(model, "predict_proba"):
            raise BatchBindError(f"the model in {str(file)!r} has no predict_proba; use "
                                 f"`score: prediction`", "score")
        index = _class_index(list(getattr(model, "classes_", [])), positive_class)
    return Model(file, "joblib", [str(x) for x in names] if names is not None else None,
                 int(n) if n is not None else None, model, score_kind, index)


def _load_onnx(file: Path, score_kind: ScoreKind, positive_class: Any) -> Model:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BatchBindError("ONNX models need the `ml` extra: pip install 'tickflow[ml]'",
                             "path") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BatchBindError(f"cannot load ONNX model {str(file)!r}: {exc}", "path") from exc
    meta = session.get_modelmeta().custom_metadata_map
    inputs = session.get_inputs()
    names: list[str] | None = None
    if FEATURES_META in meta:
        names = [str(x) for x in json.loads(meta[FEATURES_META])]
    elif len(inputs) > 1:
        names = [i.name for i in inputs]
    n: int | None = len(inputs) if len(inputs) > 1 else None
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and isinstance(inputs[0].shape[1], int):
        n = inputs[0].shape[1]
    index = -1
    if score_kind == "probability":
        classes = json.loads(meta["tickflow_classes"]) if "tickflow_classes" in meta else []
        index = _class_index(classes, positive_class)
    return Model(file, "onnx", names, n, session, score_kind, index)


def _class_index(classes: list[Any], positive_class: Any) -> int:
    """The probability column to report: the positive class's, by default the last one."""
    if positive_class is None:
        return -1
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    for i, c in enumerate(labels):
        if c == positive_class or str(c) == str(positive_class):
            return i
    raise BatchBindError(f"positive_class {positive_class!r} is not one of the model's "
                         f"classes {labels}", "positive_class")


def check_features(model: Model, features: Sequence[str]) -> None:
    """The model's recorded feature names must be the step's ``features``, in order."""
    features = list(features)
    if model.feature_names is None:
        if model.n_features is not None and model.n_features != len(features):
            raise BatchBindError(f"the model expects {model.n_features} features, the step "
                                 f"gives {len(features)}", "features")
        return
    expected = model.feature_names
    if expected == features:
        return
    missing = [f for f in expected if f not in features]
    extra = [f for f in features if f not in expected]
    if not missing and not extra:
        raise BatchBindError(f"the model was trained on these columns in another order: "
                             f"{', '.join(expected)}", "features")
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"not in the model: {', '.join(extra)}")
    raise BatchBindError(f"features do not match the model's ({'; '.join(parts)}); the "
                         f"model was trained on {', '.join(expected)}", "features")
