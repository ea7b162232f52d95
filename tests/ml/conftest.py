"""One small research output and the models trained on it, shared by the ML tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tickflow.engine.compile import compile_job
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job
from tickflow.engine.train import TrainReport, TrainSpec, train

FEATURES = ["zscore", "rsi", "log_return", "l1_imbalance"]

FEATURE_STEPS = """\
steps:
  - kernel: log_returns
  - kernel: rolling_zscore
    params: {window: 50}
  - kernel: rsi
  - kernel: l1_imbalance
"""


def research_job(path: Path, rows: int, seed: int, out: Path, extra: str = "") -> Path:
    path.write_text("name: ml-features\nmode: research\n"
                    f"sources:\n  - kind: simulator\n    rows: {rows}\n    symbols: 3\n"
                    f"    seed: {seed}\n" + FEATURE_STEPS + extra +
                    f"sinks:\n  - kind: parquet\n    path: {out}\n")
    return path


@dataclass
class Trained:
    root: Path
    data: Path
    model: Path
    onnx: Path
    report: TrainReport


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("ml")
    data = root / "features.parquet"
    run_local(compile_job(load_job(research_job(root / "features.yaml", 30_000, 3, data))),
              workers=1)
    spec = TrainSpec(name="rf-test", data=str(data), features=FEATURES,
                     model={"n_estimators": 15, "max_depth": 5, "min_samples_leaf": 20},
                     output=str(root / "models" / "rf.joblib"), onnx=True)
    report = train(spec)
    return Trained(root, data, root / "models" / "rf.joblib", root / "models" / "rf.onnx",
                   report)
