"""tickflow: declarative batch/stream jobs for crypto trading research.

Installed from a wheel, the engine, kernels and connectors live under this package
(``tickflow.engine`` and so on). In a source checkout they are the folders ``engine/``,
``kernels/`` and ``connectors/`` beside this one, so the package path reaches them there.
"""

from __future__ import annotations

import os as _os

_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "engine")):  # a source checkout or an editable install
    __path__.append(_os.path.dirname(_here))

__version__ = "0.2.0"
