"""Compile-time checks of a job's data, not its YAML: source column types and output paths.

A timestamp stored as strings, or a price stored as text, used to end in an ``ArrowTypeError``
traceback (or be cast silently) mid-run; a sink whose path is the input file, or a file in the
input's directory, replaced the input. Both are refused before anything runs, located at the
source or sink, and named: which source, which column, what type was expected and found.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from tickflow.engine.field_paths import format_path

Report = Callable[[tuple[Any, ...], str], None]
"""``report(path_in_the_job, message)``: the compiler locates the path and keeps the message."""

_TIMESTAMP = "a timestamp or integer microseconds since the epoch"
_NUMBER = "a number (float, integer, decimal or boolean)"


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_number(t: pa.DataType) -> bool:
    t = _value_type(t)
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            or pa.types.is_boolean(t) or pa.types.is_timestamp(t) or pa.types.is_null(t))


def _is_timestamp(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_integer(t) or pa.types.is_null(t)


def _is_key(t: pa.DataType) -> bool:
    t = _value_type(t)
    return not (pa.types.is_nested(t) or pa.types.is_null(t) or pa.types.is_floating(t))


def check_source_types(streams: dict[str, Any], schemas: dict[int, pa.Schema], key: str,
                       report: Report) -> None:
    """Refuse source columns whose type the kernels, operators or key index cannot read.

    Args:
        streams: the compiler's stream plan (engine/streams.py).
        schemas: each source's schema, by its index in ``sources:``.
        key: the job's key column.
        report: where to send ``(path, message)`` problems.
    """
    readers: dict[str, dict[str, str]] = {name: {} for name in streams}
    for stream in streams.values():
        produced: set[str] = set()
        for step in stream.steps:  # kernel steps, in execution order
            for col in step.input_columns:
                if col not in produced:
                    readers[stream.name].setdefault(col, f"step '{step.step_id}'")
            produced.update(step.output_columns)
        for name, rule in stream.signals.items():  # rules compare numbers only
            for col in sorted(rule.columns - produced):
                readers[stream.name].setdefault(col, f"signal '{name}'")
        op = stream.operator
        if op is not None:
            for port, source_stream in op.streams.items():
                for col in op.input_columns:
                    readers.get(source_stream, {}).setdefault(
                        col, f"step '{op.step_id}' ({port})")
    for stream in streams.values():
        if not stream.is_source or stream.origin.index not in schemas:
            continue
        use = stream.origin
        schema = schemas[use.index]
        where = ("sources", use.index, "path") if hasattr(use.config, "path") else \
            ("sources", use.index)
        shown = f"{use.definition.name} source '{use.label}'"
        if getattr(use.config, "path", None):
            shown += f" ({use.config.path})"
        checks: list[tuple[str, Callable[[pa.DataType], bool], str, str]] = [
            ("timestamp", _is_timestamp, _TIMESTAMP, "the row times"),
            (key, _is_key, "a string or integer key", "the job's key"),
        ]
        checks += [(col, _is_number, _NUMBER, f"read by {who}")
                   for col, who in readers[stream.name].items()]
        seen: set[str] = set()
        for col, ok, expected, why in checks:
            if col in seen or col not in schema.names:
                continue
            seen.add(col)
            found = schema.field(col).type
            if not ok(found):
                report(where, f"column {col!r} of {shown} has type {found}; expected {expected} "
                              f"({why})")


# --------------------------------------------------------------------------- paths


def _real(path: str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _inputs(sources: Iterable[Any]) -> list[tuple[Any, str, str, Path | str]]:
    """(use, kind of input, the written path, real file, directory or glob) per source path."""
    out: list[tuple[Any, str, str, Path | str]] = []
    for use in sources:
        path = getattr(use.config, "path", None)
        if not isinstance(path, str) or not path:
            continue
        expanded = os.path.expanduser(path)
        if _is_glob(expanded):
            out.append((use, "glob", path, os.path.abspath(expanded)))
        elif os.path.isdir(expanded):
            out.append((use, "directory", path, _real(path)))
        elif os.path.exists(expanded):
            out.append((use, "file", path, _real(path)))
    return out


def _outputs(sources: Iterable[Any], sinks: Iterable[Any], declared_sinks: int,
             ) -> list[tuple[tuple[Any, ...], str, Path]]:
    """(job path of the setting, written path, real path) of every file the job writes.

    A sink's ``path`` comes first; dead-letter files (``dead_letter_path``) last.
    """
    out: list[tuple[tuple[Any, ...], str, Path]] = []
    for section, uses in (("sinks", sinks), ("sources", sources)):
        for use in uses:
            names = ("path", "dead_letter_path") if section == "sinks" else ("dead_letter_path",)
            # the `report:` block is compiled into a sink after the declared ones
            where = ("report",) if section == "sinks" and use.index >= declared_sinks else \
                (section, use.index)
            for name in names:
                value = getattr(use.config, name, None)
                if isinstance(value, str) and value:
                    out.append(((*where, name), value, _real(value)))
    return out


def check_output_paths(sources: list[Any], sinks: list[Any], declared_sinks: int,
                       job_file: str, report: Report) -> None:
    """Refuse an output that is an input file, lies in an input directory, matches an input
    glob or is the job file itself, symlinks resolved; and two outputs that are one file."""
    inputs = _inputs(sources)
    job_real = _real(job_file) if job_file else None
    seen: dict[Path, tuple[Any, ...]] = {}
    for where, written, target in _outputs(sources, sinks, declared_sinks):
        # several sources may append their dead letters to one file, and a JSON Lines file in
        # a Parquet dataset directory is not read back: only replacing an input is refused
        is_data = where[-1] == "path"
        for use, kind, source_path, real in inputs:
            shown = f"source '{use.label}' ({source_path})"
            if kind == "file" and target == real:
                via = "" if os.path.abspath(os.path.expanduser(written)) == str(real) else \
                    f" (through a symlink: both are {real})"
                report(where, f"{written!r} is the file that {shown} reads{via}; writing it "
                              f"would replace the input: choose another path")
            elif not is_data:
                continue
            elif kind == "directory" and isinstance(real, Path) and target.is_relative_to(real):
                report(where, f"{written!r} is inside the directory that {shown} reads "
                              f"({real}); the output would become part of the input: write "
                              f"it elsewhere")
            elif kind == "glob" and (fnmatch.fnmatch(str(target), str(real)) or
                                     fnmatch.fnmatch(os.path.abspath(written), str(real))):
                report(where, f"{written!r} matches the glob that {shown} reads; the output "
                              f"would become part of the input: write it elsewhere")
        if job_real is not None and target == job_real:
            report(where, f"{written!r} is the job file itself; choose another path")
        if target in seen and "path" in (where[-1], seen[target][-1]):
            report(where, f"{written!r} is also written by {format_path(seen[target])}; two "
                          f"outputs cannot share a file")
        seen.setdefault(target, where)
