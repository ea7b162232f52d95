"""The memory state backend: state lives in the kernels' arrays and nothing goes to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import StateBackend, StateSnapshot, StepLayout, check_ids


class MemoryStateBackend(StateBackend):
    """Keeps snapshots in this process only: a restart starts from empty state.

    The engine takes no checkpoints with it (``is_persistent`` is False); ``write``/``read``
    exist so that the backend contract holds for every backend.
    """

    name = "memory"
    is_persistent = False

    def __init__(self, **options: object):
        super().__init__(**options)
        self._saved: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    def write(self, directory: Path, snapshot: StateSnapshot) -> None:
        self._saved[str(directory)] = {sid: {name: arr.copy() for name, arr in fields.items()}
                                       for sid, fields in snapshot.steps.items()}

    def read(self, directory: Path, layout: dict[str, StepLayout], rows: dict[str, int],
             key_ids: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
        saved = self._saved.get(str(directory))
        if saved is None:
            raise StateError(f"no state in memory for {directory}")
        out: dict[str, dict[str, np.ndarray]] = {}
        for sid, fields in layout.items():
            ids = check_ids(key_ids, rows[sid], sid)
            if sid not in saved:
                raise StateError(f"no state in memory for step '{sid}'")
            out[sid] = {f.name: (saved[sid][f.name].copy() if ids is None
                                 else saved[sid][f.name][ids]) for f in fields}
        return out
