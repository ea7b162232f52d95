"""Turn pydantic validation errors into located, readable problems.

Shape: ``jobs/x.yaml:14:9: steps[3].params.window: expected an integer >= 1, found 0``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from tickflow.engine.errors import Problem
from tickflow.engine.field_paths import format_path
from tickflow.engine.loader import Marks
from tickflow.engine.registry import close_matches, did_you_mean


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return _short(value)


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (for "did you mean" keys)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            field = next((f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """list[Model] / Model | None / dict[str, Model] -> Model."""
    origin = typing.get_origin(annotation)
    if origin in (list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def problem_message(err: dict[str, Any], model: type[BaseModel] | None,
                    loc: Sequence[Any]) -> tuple[str, bool]:
    """(message, located at the key rather than the value)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    found = err.get("input")
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing", False
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1]) if model else None
        names = _field_names(parent) if parent else []
        hint = did_you_mean(close_matches(str(loc[-1]), names))
        allowed = f" (allowed: {', '.join(names)})" if names and not hint else ""
        return f"unknown key {loc[-1]!r}{hint}{allowed}", True
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        hint = did_you_mean(close_matches(str(found), options))
        return f"expected one of {expected}, found {_short(found)}{hint}", False
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, found {_describe(found)}", False
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"expected a value {bounds[kind]} {limit}, found {_short(found)}", False
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), found {_describe(found)}", False
    if kind == "string_pattern_mismatch":
        return (f"expected a name of letters, digits, _ or - (starting with a letter), "
                f"found {_short(found)}", False)
    message = err.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if message.startswith("Input should be "):
        message = "expected " + message[len("Input should be "):]
        return f"{message}, found {_describe(found)}", False
    return message, False


def validation_problems(exc: ValidationError, marks: Marks, prefix: Sequence[str | int] = (),
                        model: type[BaseModel] | None = None,
                        context: str = "") -> list[Problem]:
    """One Problem per pydantic error, located through ``marks`` under ``prefix``."""
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
        # union members show up as extra loc parts named after the type; drop those
        loc = [p for p in loc if not (isinstance(p, str) and p in {"int", "str", "float",
                                                                   "list[str]", "dict[str,str]"})]
        message, at_key = problem_message(err, model, loc)
        full = (*prefix, *loc)
        mark = marks.find(full, prefer_key=at_key)
        key = (format_path(full), message)
        if key in seen:
            continue
        seen.add(key)
        out.append(Problem(mark.file, mark.line, mark.col, format_path(full),
                           message + (f" ({context})" if context else "")))
    return out
