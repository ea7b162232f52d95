"""``run-job train SPEC``: fit the next-return RandomForest on a research output.

The training spec is a small YAML file (safe-loaded, ``${VAR}`` expanded, problems located like
a job's)::

    name: rf-next-return
    data: out/research_features.parquet     # a research job's Parquet output
    features: [zscore, rsi, l1_imbalance, realized_vol, ofi]
    target: {column: log_return, horizon: 1}
    test_fraction: 0.3
    model: {n_estimators: 100, max_depth: 10}
    output: models/rf_next_return.joblib

The label of a row is the sign of the *next* return of the same symbol (the sum of the next
``horizon`` values of ``target.column``): 1 when up, 0 when down; rows whose next return is
exactly 0 (quote-only ticks repeat the last trade price) are left out by default. The split is
in time, never shuffled: rows before a cut time train, rows from it on test, and a training row
whose label reaches past the cut is dropped (an embargo), so no test information leaks in.

Writes the model (joblib; ``onnx: true`` adds an ONNX copy with the feature names in its
metadata) and a report beside it (``.report.json`` and ``.report.md``: rows, time ranges,
accuracy, AUC, base rate, feature importances).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tickflow.engine.errors import JobSpecError, SourceError, TickflowError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Strict):
    """What is predicted: the sign of the next ``horizon`` returns of the same key."""

    column: str = Field("log_return", description="per-row return column")
    horizon: int = Field(1, ge=1, description="rows ahead (of the same key) summed")
    drop_zero: bool = Field(True, description="leave out rows whose next return is exactly 0")


class ForestSpec(_Strict):
    """scikit-learn RandomForestClassifier settings."""

    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(10, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    random_state: int = Field(42, ge=0)
    n_jobs: int = Field(1, ge=1, description="threads used to fit")


class TrainSpec(_Strict):
    """A training run: data, features, target, split, model and where to write them."""

    name: str
    data: str = Field(min_length=1, description="Parquet file of a research job's output")
    key: str = Field("symbol", description="column that keys the next-return target")
    timestamp: str = Field("timestamp", description="time column for the split")
    features: list[str] = Field(min_length=1)
    target: TargetSpec = Field(default_factory=TargetSpec)
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of rows, last in time")
    model: ForestSpec = Field(default_factory=ForestSpec)
    output: str = Field(min_length=1, description="model file (.joblib)")
    onnx: bool = Field(False, description="also write an ONNX copy beside the model")


@dataclass
class TrainReport:
    """What ``run-job train`` measured; written as JSON and Markdown beside the model."""

    name: str
    model_path: str
    onnx_path: str | None
    features: list[str]
    train_rows: int
    test_rows: int
    embargoed_rows: int
    train_span: list[str]
    test_span: list[str]
    accuracy: float
    auc: float | None
    base_rate: float
    feature_importances: dict[str, float] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"# Training report: {self.name}", "",
                 f"Model `{self.model_path}`" + (f", ONNX `{self.onnx_path}`"
                                                 if self.onnx_path else ""), "",
                 "| | value |", "|---|---:|",
                 f"| train rows | {self.train_rows:,} ({self.train_span[0]} to "
                 f"{self.train_span[1]}) |",
                 f"| test rows | {self.test_rows:,} ({self.test_span[0]} to "
                 f"{self.test_span[1]}) |",
                 f"| rows dropped by the embargo | {self.embargoed_rows:,} |",
                 f"| accuracy | {self.accuracy:.4f} |",
                 f"| AUC | {'n/a' if self.auc is None else f'{self.auc:.4f}'} |",
                 f"| base rate (share of up moves in test) | {self.base_rate:.4f} |", "",
                 "| feature | importance |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in self.feature_importances.items()]
        return "\n".join(lines) + "\n"


def load_train_spec(path: str | Path, overrides: Sequence[str] = ()) -> TrainSpec:
    """Read and validate a training spec; JobSpecError lists every located problem."""
    from tickflow.engine.diagnostics import validation_problems
    from tickflow.engine.loader import load_job

    loaded = load_job(path, overrides=overrides)
    try:
        return TrainSpec.model_validate(loaded.data)
    except ValidationError as exc:
        raise JobSpecError(validation_problems(exc, loaded.marks, (), TrainSpec)) from None


def next_return(keys: np.ndarray, returns: np.ndarray, horizon: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Per row: the sum of the next ``horizon`` returns of the same key, and the row it ends at.

    Rows are taken in their order within each key (the research output's time order). NaN
    (and index -1) where the key has fewer than ``horizon`` rows left or a return is NaN.
    """
    n = keys.shape[0]
    order = np.argsort(keys, kind="stable")
    k, r = keys[order], returns[order]
    j = np.arange(n)
    end = j + horizon
    valid = end < n
    end_c = np.minimum(end, n - 1)
    valid &= k[end_c] == k
    total = np.zeros(n)
    for m in range(1, horizon + 1):  # summed shift by shift: exact, unlike a cumsum difference
        total += r[np.minimum(j + m, n - 1)]
    valid &= ~np.isnan(total)
    fwd_sorted = np.where(valid, total, np.nan)
    end_sorted = np.where(valid, order[end_c], -1)
    fwd = np.empty(n)
    fwd[order] = fwd_sorted
    end_row = np.empty(n, dtype=np.int64)
    end_row[order] = end_sorted
    return fwd, end_row


def _column(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
    elif col.type != pa.float64():
        col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(col, np.nan if pa.types.is_floating(col.type) else 0)
                      .to_numpy(zero_copy_only=False))


def _span(ts: np.ndarray) -> list[str]:
    if ts.size == 0:
        return ["-", "-"]
    return [str(np.datetime64(int(ts.min()), "us")), str(np.datetime64(int(ts.max()), "us"))]


def train(spec: TrainSpec) -> TrainReport:
    """Fit, evaluate on the later part of time, and write the model and the report."""
    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.metrics import accuracy_score, roc_auc_score
    except ImportError as exc:
        raise TickflowError("training needs the `ml` extra: pip install 'tickflow[ml]'") from exc
    if not any(c in spec.data for c in "*?[") and not os.path.exists(spec.data):
        raise SourceError(f"train: cannot read data {spec.data!r}: no such file; training "
                          f"reads a features job's output, so run that job first (for the example: "
                          f"`run-job examples/ml/features.yaml`, then `run-job train "
                          f"examples/ml/train.yaml`)")
    try:
        table = pq.read_table(spec.data)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SourceError(f"train: cannot read data {spec.data!r}: {exc}") from None
    needed = [spec.key, spec.timestamp, spec.target.column, *spec.features]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise SourceError(f"train: {spec.data!r} has no column(s) {', '.join(missing)}")
    keys = pc.dictionary_encode(table.column(spec.key).combine_chunks())
    codes = np.asarray(keys.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    ts = _column(table, spec.timestamp).astype(np.int64)
    fwd, end_row = next_return(codes, _column(table, spec.target.column), spec.target.horizon)
    x = np.column_stack([_column(table, f) for f in spec.features])
    usable = np.isfinite(fwd) & np.isfinite(x).all(axis=1)
    if spec.target.drop_zero:
        usable &= fwd != 0
    label = (fwd > 0).astype(np.int64)
    cut = np.sort(ts)[min(int(len(ts) * (1 - spec.test_fraction)), len(ts) - 1)] \
        if len(ts) else 0
    end_ts = np.where(end_row >= 0, ts[np.maximum(end_row, 0)], np.iinfo(np.int64).max)
    train_mask = usable & (ts < cut) & (end_ts < cut)
    embargoed = int((usable & (ts < cut) & (end_ts >= cut)).sum())
    test_mask = usable & (ts >= cut)
    y_train, y_test = label[train_mask], label[test_mask]
    if len(np.unique(y_train)) < 2 or test_mask.sum() == 0:
        raise TickflowError(f"train: not enough data in {spec.data!r}: {int(train_mask.sum())} "
                            f"training rows with {len(np.unique(y_train))} class(es), "
                            f"{int(test_mask.sum())} test rows")

    def frame(mask: np.ndarray) -> pa.Table:  # named columns: the model keeps the names
        return pa.table({f: x[mask, i] for i, f in enumerate(spec.features)})

    m = spec.model
    model = RandomForestClassifier(n_estimators=m.n_estimators, max_depth=m.max_depth,
                                   min_samples_leaf=m.min_samples_leaf,
                                   random_state=m.random_state, n_jobs=m.n_jobs)
    model.fit(frame(train_mask), y_train)
    model.n_jobs = 1
    proba = model.predict_proba(frame(test_mask))[:, -1]
    predicted = model.classes_[(proba > 0.5).astype(int)] if len(model.classes_) == 2 \
        else model.predict(frame(test_mask))
    auc = float(roc_auc_score(y_test, proba)) if len(np.unique(y_test)) == 2 else None
    out = Path(spec.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    import joblib

    joblib.dump(model, out)
    onnx_path = write_onnx(model, spec.features, out.with_suffix(".onnx")) if spec.onnx \
        else None
    importances = sorted(zip(spec.features, model.feature_importances_, strict=True),
                         key=lambda t: -t[1])
    report = TrainReport(
        name=spec.name, model_path=str(out), onnx_path=str(onnx_path) if onnx_path else None,
        features=list(spec.features), train_rows=int(train_mask.sum()),
        test_rows=int(test_mask.sum()), embargoed_rows=embargoed,
        train_span=_span(ts[train_mask]), test_span=_span(ts[test_mask]),
        accuracy=float(accuracy_score(y_test, predicted)), auc=auc,
        base_rate=float(y_test.mean()),
        feature_importances={k: float(v) for k, v in importances})
    out.with_suffix(".report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    out.with_suffix(".report.md").write_text(report.markdown())
    return report


def write_onnx(model: Any, features: list[str], path: Path) -> Path:
    """An ONNX copy of a fitted classifier: one float input, probabilities as a tensor, and the
    feature names and classes in the metadata (``model_score`` checks them)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from tickflow.engine.ml.models import FEATURES_META

    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None,
                                                                             len(features)]))],
                          options={id(model): {"zipmap": False}})
    for key, value in ((FEATURES_META, json.dumps(features)),
                       ("tickflow_classes", json.dumps([c.item() for c in model.classes_]))):
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, value
    path.write_bytes(onx.SerializeToString())
    return path
