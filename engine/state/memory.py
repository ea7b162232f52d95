"""The memory state backend: state lives in the kernels' arrays and nothing goes to disk."""

from __future__ import annotations

from engine.registry import STATE_BACKENDS


@STATE_BACKENDS.register("memory", summary="state in RAM only; lost when the job ends")
class MemoryStateBackend:
    """Keeps nothing: a restart starts from empty state."""

    def __init__(self, path: str | None = None):
        self.path = path
