"""Plugin tests register kernels in the process-wide registries: forget them afterwards, so
that later tests (the generated-docs check, `run-job kernels`) see only the built-ins."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tickflow.engine.plugins as plugins
from tests.conftest import ROOT
from tickflow.engine.registry import CONNECTORS, KERNELS, STATE_BACKENDS

REGISTRIES = (KERNELS, CONNECTORS, STATE_BACKENDS)


@pytest.fixture(autouse=True)
def isolated_registries() -> Iterator[None]:
    before = [set(r.names()) for r in REGISTRIES]
    modules = set(sys.modules)
    path = list(sys.path)
    loaded_entry_points = set(plugins._loaded_entry_points)
    yield
    for registry, names in zip(REGISTRIES, before, strict=True):
        for name in set(registry.names()) - names:
            registry.remove(name)
    keep = [ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    for name in set(sys.modules) - modules:  # the user modules the test wrote and imported
        file = getattr(sys.modules[name], "__file__", None)
        if file and not any(Path(file).resolve().is_relative_to(d) for d in keep):
            del sys.modules[name]
    sys.path[:] = path
    plugins._loaded_entry_points.clear()
    plugins._loaded_entry_points.update(loaded_entry_points)
