"""Machine learning in jobs: the ``model_score`` batch step (importing this registers it).

scikit-learn, joblib and onnxruntime are imported only when a job loads a model, so jobs that
score nothing need none of them (they are the ``ml`` extra).
"""

from tickflow.engine.ml import score as _score  # noqa: F401  (registers model_score)
