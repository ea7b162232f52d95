"""The layers hold: import-linter's contracts (pyproject.toml), no import cycle, every module
placed.

A source checkout maps ``tickflow.engine`` and friends onto the repository's folders at import
time, which static tools cannot follow; the tests stage a real ``tickflow`` package of symlinks
in a temporary directory and analyse that (an installed wheel has this layout already).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from tests.conftest import ROOT

LAYERED = ("engine", "kernels", "connectors")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Edges of the one cycle left, in the executors the runtime redesign replaces.
KNOWN_CYCLE_EDGES = {
    # removed by the runtime redesign
    ("tickflow.engine.executors.local", "tickflow.engine.executors.streams"),
    ("tickflow.engine.executors.streams", "tickflow.engine.executors.local"),
    ("tickflow.engine.executors.local", "tickflow.engine.state.recovery"),
    ("tickflow.engine.state.recovery", "tickflow.engine.state.paging"),
    ("tickflow.engine.state.paging", "tickflow.engine.executors.local"),
}


def stage(root: Path, extra: dict[str, str] | None = None) -> Path:
    """A ``tickflow`` package under ``root`` whose subpackages are the repository's folders.

    ``extra`` adds files (path inside the package -> text); their folder is then staged file by
    file so the repository itself is never written.
    """
    package = root / "tickflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Staged for static import analysis."""\n')
    extra = extra or {}
    copied = {name.split("/")[0] for name in extra}
    for name in LAYERED:
        if name not in copied:
            (package / name).symlink_to(ROOT / name, target_is_directory=True)
            continue
        for path in (ROOT / name).rglob("*.py"):
            target = package / name / path.relative_to(ROOT / name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    for name, text in extra.items():
        (package / name).write_text(text)
    return root


def lint_imports(staged: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(staged)}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=staged, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> grimp.ImportGraph:
    staged = stage(tmp_path_factory.mktemp("staged"))
    sys.path.insert(0, str(staged))
    saved = {k: v for k, v in sys.modules.items() if k == "tickflow" or k.startswith("tickflow.")}
    for name in saved:
        del sys.modules[name]
    try:
        return grimp.build_graph("tickflow", include_external_packages=True, cache_dir=None)
    finally:
        sys.path.remove(str(staged))
        for name in [k for k in sys.modules if k == "tickflow" or k.startswith("tickflow.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_import_linter_contracts_are_kept(tmp_path: Path) -> None:
    result = lint_imports(stage(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_connector_importing_a_kernel_breaks_the_contracts(tmp_path: Path) -> None:
    bad = "from tickflow.kernels.base import Params  # the layers forbid this\n"
    result = lint_imports(stage(tmp_path, {"connectors/uses_a_kernel.py": bad}))
    assert result.returncode != 0
    assert "tickflow.connectors.uses_a_kernel -> tickflow.kernels.base" in result.stdout


def test_every_engine_module_is_placed_in_a_layer(graph: grimp.ImportGraph) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    engine = {m for m in graph.modules if m.startswith("tickflow.engine.")}
    unplaced = sorted(m for m in engine  # a package is placed through its modules
                      if not any(m == p or m.startswith(p + ".") or p.startswith(m + ".")
                                 for p in placed))
    assert not unplaced, f"add these to a layer in pyproject.toml: {unplaced}"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    internal = sorted(m for m in graph.modules if m.startswith("tickflow"))

    def edges(module: str) -> list[str]:
        return sorted(m for m in graph.find_modules_directly_imported_by(module)
                      if m.startswith("tickflow") and (module, m) not in KNOWN_CYCLE_EDGES)

    for start in internal:
        if start in index:
            continue
        work = [(start, iter(edges(start)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges(child))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(graph: grimp.ImportGraph) -> None:
    edge = {"importer": "tickflow.engine.registry", "imported": "tickflow.kernels.base"}
    graph.add_import(**edge)
    try:
        assert any("tickflow.engine.registry" in c for c in _cycles(graph))
    finally:
        graph.remove_import(**edge)


def test_kernels_import_only_numpy_numba_pydantic_and_the_leaves(graph: grimp.ImportGraph) -> None:
    allowed = {"numpy", "numba", "pydantic", "tickflow.engine.registry",
               "tickflow.engine.durations"}
    kernels = [m for m in graph.modules if m.startswith("tickflow.kernels")]
    imported = set().union(*(graph.find_modules_directly_imported_by(m) for m in kernels))
    outside = {m for m in imported if not m.startswith("tickflow.kernels")}
    wrong = sorted(m for m in outside
                   if m not in allowed and m.split(".")[0] not in sys.stdlib_module_names)
    assert not wrong


def test_the_engine_names_every_built_in_connector_by_its_module() -> None:
    from tickflow.engine.builtin_connectors import BUILTIN_CONNECTORS
    from tickflow.engine.registry import CONNECTORS

    connectors = importlib.import_module("tickflow.connectors")
    for info in pkgutil.iter_modules(connectors.__path__):
        importlib.import_module(f"tickflow.connectors.{info.name}")
    registered = {entry.name: entry.obj.cls.__module__ for entry in CONNECTORS
                  if entry.obj.cls.__module__.startswith("tickflow.connectors.")}
    assert registered == BUILTIN_CONNECTORS
