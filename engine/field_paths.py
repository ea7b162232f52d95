"""Paths to the fields of a job: ``steps[3].params.window`` for messages, and the ``--set
path=value`` overrides that the loader and the sweeps apply (a step named by index or by id)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from tickflow.engine.yaml_safe import YamlLimitError, load_value

PathKey = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """('steps', 3, 'params', 'window') -> 'steps[3].params.window'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_override(text: str) -> tuple[PathKey, Any]:
    """'steps[2].params.window=50' -> (('steps', 2, 'params', 'window'), 50)."""
    if "=" not in text:
        raise ValueError(f"--set expects key.path=value, found {text!r}")
    key, raw = text.split("=", 1)
    parts: list[str | int] = []
    for token in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", key.strip()):
        if token.group(1) is not None:
            parts.append(token.group(1))
        else:
            parts.append(int(token.group(2)))
    if not parts:
        raise ValueError(f"--set expects key.path=value, found {text!r}")
    try:
        value = load_value(raw) if raw.strip() else ""
    except YamlLimitError as exc:
        raise ValueError(f"the value of {key.strip()} is {exc.problem}") from None
    except yaml.YAMLError:
        value = raw
    return tuple(parts), value


_MISSING = object()


def _walk(data: Any, path: list[str | int]) -> Any:
    node = data
    for part in path:
        found = (isinstance(part, int) and isinstance(node, list) and part < len(node)) or \
            (isinstance(part, str) and isinstance(node, dict) and part in node)
        if not found:
            return _MISSING
        node = node[part]
    return node


def _resolve_item(node: list[Any], part: str | int, where: PathKey) -> int | str:
    """A list index from an int, a digit string, or the ``id`` of an item (steps)."""
    if isinstance(part, int):
        return part
    if part.isdigit():
        return int(part)
    ids = [item.get("id") for item in node if isinstance(item, dict)]
    if part in ids:
        return ids.index(part)
    known = ", ".join(str(i) for i in ids if i) or "none"
    return f"no item with id {part!r} at {format_path(where) or 'top level'} (ids: {known})"


def resolve_override_path(data: dict[str, Any], path: PathKey) -> PathKey | str:
    """The path with list items named by id or digit string turned into indices, or an error.

    ``steps.rsi.params.period`` and ``steps[2].params.period`` are the same field when step 2
    has ``id: rsi``; the sweeps address steps the same way.
    """
    resolved: list[str | int] = []
    for part in path:
        node = _walk(data, resolved)
        if isinstance(part, str) and isinstance(node, list):
            index = _resolve_item(node, part, tuple(resolved))
            if isinstance(index, str):
                return index
            part = index
        resolved.append(part)
    return tuple(resolved)


def apply_override(data: dict[str, Any], path: PathKey, value: Any) -> str | None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return f"no item [{part}] at {format_path(path[:i]) or 'top level'}"
            node = node[part]
            continue
        if not isinstance(node, dict):
            return f"{format_path(path[:i])} is not a mapping"
        if part not in node or node[part] is None:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            return f"no item [{last}] at {format_path(path[:-1])}"
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        return f"{format_path(path[:-1])} is not a mapping"
    return None
