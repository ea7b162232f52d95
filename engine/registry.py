"""Name -> object registries that YAML refers to (kernels, connectors, state backends).

This is a leaf module: it imports nothing else from tickflow, so kernels and connectors can
register themselves without pulling in the engine.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistrationError(ValueError):
    """A name registered twice with different objects (e.g. a plugin reusing a built-in's name)."""


class UnknownNameError(LookupError):
    """A name that is not registered; carries close matches for a "did you mean" hint."""

    def __init__(self, registry: str, name: str, suggestions: list[str]):
        self.registry = registry
        self.name = name
        self.suggestions = suggestions
        hint = did_you_mean(suggestions)
        super().__init__(f"unknown {registry} {name!r}{hint}")


def did_you_mean(suggestions: list[str]) -> str:
    """Format close matches as a sentence tail: "; did you mean 'a' or 'b'?"."""
    if not suggestions:
        return ""
    quoted = [f"'{s}'" for s in suggestions]
    if len(quoted) == 1:
        return f"; did you mean {quoted[0]}?"
    return f"; did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"


def close_matches(name: str, candidates: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A named collection of entries; lookups of unknown names suggest close matches."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Entry[T]] = {}
        self._lazy: dict[str, str] = {}  # name -> module that registers it when imported

    def add(self, name: str, obj: T, summary: str = "", **meta: Any) -> T:
        module = self._lazy.pop(name, None)
        if module is not None and module not in sys.modules:
            # another module claims a lazily known name: import its owner first, so that the
            # clash is refused now, as it would be had the owner been imported already
            importlib.import_module(module)
        if name in self._entries and self._entries[name].obj is not obj:
            raise RegistrationError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, summary, meta)
        return obj

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.add(name, obj, summary, **meta)

        return deco

    def add_lazy(self, name: str, module: str) -> None:
        """Say that importing ``module`` registers ``name``; it is imported on first lookup.

        This lets the engine know the built-in connectors by name without importing them (the
        layers point one way), and keeps heavy modules out of jobs that do not use them.
        """
        if name not in self._entries:
            self._lazy[name] = module

    def remove(self, name: str) -> None:
        """Forget a name (a plugin whose registration failed half-way is rolled back)."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries and name in self._lazy:
            self._load(name)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.what, name, close_matches(name, self.names())) from None

    def _load(self, name: str) -> None:
        module = self._lazy.pop(name)
        importlib.import_module(module)
        if name not in self._entries:
            raise RegistrationError(f"importing {module} did not register {self.what} {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[Entry[T]]:
        for name in list(self._lazy):
            if name in self._lazy:  # one import may register several names
                self._load(name)
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._lazy))

    def __len__(self) -> int:
        return len(self.names())


KERNELS: Registry[Any] = Registry("kernel")
CONNECTORS: Registry[Any] = Registry("connector")
STATE_BACKENDS: Registry[Any] = Registry("state backend")
