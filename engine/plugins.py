"""User plugins: the user's own modules that register kernels, connectors or state backends.

A job names them (``plugins: [my_research.kernels]``, with ``plugin_paths:`` for directories
that are not installed), or an installed package advertises them through the entry-point
groups ``tickflow.kernels``, ``tickflow.connectors`` and ``tickflow.state_backends``. A plugin
registers exactly as a built-in does (``@kernel(...)`` above an ``@njit`` function), so it gets
the same compile-time validation and shows in ``run-job kernels``.

Importing a plugin runs its code: plugins are trusted like any installed package. A plugin that
fails to import or to register is rolled back (nothing it registered stays) and reported as a
:class:`PluginError` naming the module and the reason, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from tickflow.engine.errors import TickflowError
from tickflow.engine.registry import (
    CONNECTORS,
    KERNELS,
    STATE_BACKENDS,
    RegistrationError,
    Registry,
)

ENTRY_POINT_GROUPS: dict[str, Registry[Any]] = {
    "tickflow.kernels": KERNELS,
    "tickflow.connectors": CONNECTORS,
    "tickflow.state_backends": STATE_BACKENDS,
}
"""Entry-point group -> the registry its plugins are expected to fill."""

_REGISTRIES: tuple[Registry[Any], ...] = (KERNELS, CONNECTORS, STATE_BACKENDS)
_loaded_entry_points: set[tuple[str, str, str]] = set()


class PluginError(TickflowError):
    """A plugin module could not be imported or could not register what it declares."""

    exit_code = 2

    def __init__(self, module: str, reason: str, label: str | None = None):
        self.module = module
        self.reason = reason
        super().__init__(f"{label or f'plugin {module!r}'}: {reason}")


def _snapshot() -> list[set[str]]:
    return [set(r.names()) for r in _REGISTRIES]


def _added_since(before: list[set[str]]) -> list[tuple[Registry[Any], str]]:
    return [(r, name) for r, names in zip(_REGISTRIES, before, strict=True)
            for name in r.names() if name not in names]


def _where(exc: BaseException, module: str) -> str:
    """The innermost frame of the plugin's own code, as ' (file:line)', when there is one."""
    frames = traceback.extract_tb(exc.__traceback__)
    root = module.split(".", 1)[0]
    own = [f for f in frames if "importlib" not in f.filename
           and (root in Path(f.filename).parts or Path(f.filename).stem == root)]
    if not own:
        return ""
    f = own[-1]
    file = Path(f.filename)
    if file.is_relative_to(Path.cwd()):
        file = file.relative_to(Path.cwd())
    return f" ({file}:{f.lineno})"


def _reason(exc: BaseException, module: str) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
            module == exc.name or module.startswith(exc.name + ".")):
        return (f"no module named {exc.name!r} (install it, or add its directory to "
                f"`plugin_paths:`)")
    if isinstance(exc, SyntaxError):
        return f"syntax error in {exc.filename}:{exc.lineno}: {exc.msg}"
    if isinstance(exc, RegistrationError):
        return f"failed to register: {exc} (choose another name){_where(exc, module)}"
    return f"failed to import: {type(exc).__name__}: {exc}{_where(exc, module)}"


def check_kernel(definition: Any) -> str | None:
    """The kernel contract the engine relies on; a user kernel that breaks it is refused.

    Returns:
        What is wrong, or None when the kernel is usable.
    """
    from tickflow.kernels.base import KernelDef, Params

    if getattr(definition, "kind", None) != "kernel" or not isinstance(definition, KernelDef):
        return None  # other kinds (batch steps) carry their own checks
    if not hasattr(definition.fn, "py_func"):
        return (f"kernel {definition.name!r} is not a numba function: decorate it with "
                f"@njit(nogil=True, cache=True) below @kernel (docs/kernel-guide.md)")
    if not (isinstance(definition.params, type) and issubclass(definition.params, Params)):
        return f"kernel {definition.name!r}: params must be a kernels.base.Params model"
    if len(definition.output_dtypes) != len(definition.outputs):
        return (f"kernel {definition.name!r} declares {len(definition.outputs)} outputs but "
                f"{len(definition.output_dtypes)} output dtypes")
    if not definition.doc:
        return (f"kernel {definition.name!r} has no docstring; give its formula, warm-up, "
                f"NaN policy and state layout")
    return None


def load_plugin(module: str) -> list[str]:
    """Import one plugin module; everything it registers must pass :func:`check_kernel`.

    Returns:
        The names it registered (empty when it was imported before).

    Raises:
        PluginError: naming the module and the reason; what it registered is rolled back.
    """
    before = _snapshot()
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure of the user's code becomes a located message
        _rollback(before)
        raise PluginError(module, _reason(exc, module)) from exc
    added = _added_since(before)
    for registry, name in added:
        problem = check_kernel(registry.get(name)) if registry is KERNELS else None
        if problem is not None:
            _rollback(before)
            sys.modules.pop(module, None)  # so that a fixed module can be imported again
            raise PluginError(module, f"failed to register: {problem}")
    return [name for _, name in added]


def _rollback(before: list[set[str]]) -> None:
    for registry, name in _added_since(before):
        registry.remove(name)


def add_plugin_paths(paths: Iterable[str], base: str | Path) -> None:
    """Put the job's ``plugin_paths`` (relative to the job file's directory) on ``sys.path``."""
    for p in paths:
        full = str((Path(base) / Path(p).expanduser()).resolve())
        if full not in sys.path:
            sys.path.append(full)


def load_entry_points() -> list[PluginError]:
    """Load installed packages' ``tickflow.*`` entry points not loaded yet.

    An entry point names a module (importing it registers) or a callable taking no arguments
    (called once). Failures are returned, not raised, so that the caller reports them all.
    """
    errors: list[PluginError] = []
    installed = metadata.entry_points()  # one scan of sys.path for the three groups
    for group in ENTRY_POINT_GROUPS:
        for ep in installed.select(group=group):
            ident = (group, ep.name, ep.value)
            if ident in _loaded_entry_points:
                continue
            _loaded_entry_points.add(ident)
            dist = ep.dist.name if ep.dist is not None else "?"
            label = f"entry point '{ep.name} = {ep.value}' ({group}, package {dist!r})"
            before = _snapshot()
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, type):
                    obj()
            except Exception as exc:  # reported with the entry point's name, never raised raw
                _rollback(before)
                errors.append(PluginError(ep.module, _reason(exc, ep.module), label))
                continue
            for registry, name in _added_since(before):
                problem = check_kernel(registry.get(name)) if registry is KERNELS else None
                if problem is not None:
                    _rollback(before)
                    errors.append(PluginError(ep.module, f"failed to register: {problem}",
                                              label))
                    break
    return errors


def load_plugins(modules: Sequence[str]) -> list[str]:
    """Load entry points and the given modules (``run-job kernels --plugins``); raise the first
    failure."""
    errors = load_entry_points()
    if errors:
        raise errors[0]
    names: list[str] = []
    for m in modules:
        names.extend(load_plugin(m))
    return names


def load_job_plugins(plugins: Sequence[str], plugin_paths: Sequence[str], job_path: str,
                     report: Callable[[tuple[Any, ...], str], None]) -> None:
    """Load what a job needs before its names are resolved; report each failure located.

    Args:
        plugins: the job's ``plugins:`` module names.
        plugin_paths: the job's ``plugin_paths:``, relative to the job file.
        job_path: the job file (its directory anchors ``plugin_paths``).
        report: called with the YAML path to point at and the message.
    """
    add_plugin_paths(plugin_paths, Path(job_path).parent)
    for error in load_entry_points():
        report(("plugins",), str(error))
    for i, module in enumerate(plugins):
        try:
            load_plugin(module)
        except PluginError as exc:
            report(("plugins", i), str(exc))
