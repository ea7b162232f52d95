"""Name -> object registries that YAML refers to (kernels, connectors, state backends).

This is a leaf module: it imports nothing else from tickflow, so kernels and connectors can
register themselves without pulling in the engine.
"""

from __future__ import annotations

import difflib
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

    def add(self, name: str, obj: T, summary: str = "", **meta: Any) -> T:
        if name in self._entries and self._entries[name].obj is not obj:
            raise RegistrationError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, summary, meta)
        return obj

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.add(name, obj, summary, **meta)

        return deco

    def remove(self, name: str) -> None:
        """Forget a name (a plugin whose registration failed half-way is rolled back)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.what, name, close_matches(name, self.names())) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


KERNELS: Registry[Any] = Registry("kernel")
CONNECTORS: Registry[Any] = Registry("connector")
STATE_BACKENDS: Registry[Any] = Registry("state backend")
