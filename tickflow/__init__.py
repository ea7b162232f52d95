"""tickflow: declarative batch/stream jobs for crypto trading research.

The public Python API is what ``__all__`` lists (``import tickflow as tf``):
``tf.load_job``, ``tf.run``, ``tf.stream``, ``tf.backtest`` and their result types. They are
imported on first use, so ``import tickflow.engine...`` stays light.

Installed from a wheel, the engine, kernels and connectors live under this package
(``tickflow.engine`` and so on). In a source checkout they are the folders ``engine/``,
``kernels/`` and ``connectors/`` beside this one, so the package path reaches them there.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

# Arrow's allocator (mimalloc) backs its memory with 2 MB transparent huge pages, which stay
# resident while any of their 4 KB pages holds a block: 20-25 MB more at the 100,000-symbol
# research job's peak, at no measured speed. Read when pyarrow loads, so set before it is.
_os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")

_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "engine")):  # a source checkout or an editable install
    __path__.append(_os.path.dirname(_here))

__version__ = "0.2.0"

__all__ = ["BacktestResult", "Job", "Problem", "Result", "TickflowError", "__version__",
           "backtest", "load_job", "run", "stream"]

_LAZY = {"Job": "tickflow.api", "load_job": "tickflow.api", "run": "tickflow.api",
         "stream": "tickflow.api", "backtest": "tickflow.api",
         "Result": "tickflow.results", "BacktestResult": "tickflow.results",
         "Problem": "tickflow.engine.errors", "TickflowError": "tickflow.engine.errors"}

if TYPE_CHECKING:
    from tickflow.api import Job, backtest, load_job, run, stream
    from tickflow.engine.errors import Problem, TickflowError
    from tickflow.results import BacktestResult, Result


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tickflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
