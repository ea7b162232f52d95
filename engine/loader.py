"""Load a job file safely, remembering where every key and value came from.

YAML is composed with ``yaml.SafeLoader`` into nodes and walked by hand, so each value keeps its
``file:line:col``; ``${VAR}`` and ``${VAR:-default}`` are read from the environment; ``include:``
files contribute their steps first (a path missing beside the job falls back to the copy shipped
in the package, so ``include: [features/core.yaml]`` works from any folder); ``--set
a.b[2].c=value`` overrides any field, and a step can be named by id (``steps.rsi.params.period``)
as in sweeps, or by index (``steps[2]`` or ``steps.2``). Size, depth and aliases
are bounded (engine/yaml_safe.py), so a hostile file gives a located error, not a hang.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tickflow.engine.errors import JobSpecError, Problem
from tickflow.engine.field_paths import (
    PathKey,
    apply_override,
    format_path,
    parse_override,
    resolve_override_path,
)
from tickflow.engine.yaml_safe import (
    MAX_DEPTH,
    BoundedLoader,
    YamlLimitError,
    line_col,
    load_value,
    read_job_text,
)

_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in
              ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Mark:
    file: str
    line: int | None
    col: int | None


@dataclass
class Marks:
    """Where each path of the loaded data was written: value marks and key marks."""

    values: dict[PathKey, Mark] = field(default_factory=dict)
    keys: dict[PathKey, Mark] = field(default_factory=dict)
    default_file: str = ""

    def find(self, path: Sequence[str | int], prefer_key: bool = False) -> Mark:
        """The mark of the deepest prefix of ``path`` that was written in a file."""
        p = tuple(path)
        while True:
            if prefer_key and p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return Mark(self.default_file, None, None)
            p = p[:-1]
            prefer_key = False

    def shifted(self, prefix: str, offset: int) -> Marks:
        """Marks with list indices under ``prefix`` moved by ``offset`` (for includes)."""
        out = Marks(default_file=self.default_file)
        for src, dst in ((self.values, out.values), (self.keys, out.keys)):
            for p, m in src.items():
                if len(p) >= 2 and p[0] == prefix and isinstance(p[1], int):
                    dst[(prefix, p[1] + offset, *p[2:])] = m
                else:
                    dst[p] = m
        return out


@dataclass
class LoadedJob:
    data: dict[str, Any]
    marks: Marks
    path: str
    text: str


class _Walker:
    def __init__(self, file: str, text: str, problems: list[Problem], env: dict[str, str]):
        self.file = file
        self.text = text
        self.problems = problems
        self.env = env
        self.marks = Marks(default_file=file)
        self.too_deep = False

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def load(self) -> Any:
        try:
            self.loader = BoundedLoader(self.text)  # checks for control characters first
        except yaml.reader.ReaderError as exc:
            line, col = line_col(self.text, exc.position)
            self.problems.append(Problem(self.file, line, col, "",
                                         f"the file holds a control character #x"
                                         f"{exc.character:04x}; expected printable text"))
            return None
        try:
            node = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            m = exc.problem_mark or exc.context_mark
            line, col = (m.line + 1, m.column + 1) if m else (None, None)
            what = exc.problem or "invalid YAML"
            ctx = f" ({exc.context})" if exc.context else ""
            kind = "YAML limit" if isinstance(exc, YamlLimitError) else "YAML syntax error"
            self.problems.append(Problem(self.file, line, col, "", f"{kind}: {what}{ctx}"))
            return None
        except yaml.YAMLError as exc:
            self.problems.append(Problem(self.file, None, None, "", f"YAML error: {exc}"))
            return None
        finally:
            self.loader.dispose()
        if node is None:
            return None
        return self.walk(node, ())

    def walk(self, node: yaml.Node, path: PathKey) -> Any:
        self.marks.values[path] = self.mark(node)
        if len(path) > MAX_DEPTH:  # aliases can nest deeper than the text does
            if not self.too_deep:
                self.too_deep = True
                self.problems.append(Problem(self.file, *self._lc(node), "", f"YAML limit: "
                                             f"nested deeper than {MAX_DEPTH} levels (through "
                                             f"aliases)"))
            return None
        if node.tag not in _SAFE_TAGS:
            self.problems.append(Problem(
                self.file, *self._lc(node), format_path(path),
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed; "
                f"job files hold plain values only"))
            return None
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                # a key is the text written (`on:` is the key 'on'; `1:` the key '1')
                if not isinstance(key_node, yaml.ScalarNode) or \
                        key_node.tag == "tag:yaml.org,2002:null":
                    self.problems.append(Problem(self.file, *self._lc(key_node),
                                                 format_path(path), "a key must be a name"))
                    continue
                key = str(key_node.value)
                if key in out:
                    self.problems.append(Problem(
                        self.file, *self._lc(key_node), format_path((*path, key)),
                        f"duplicate key {key!r} (the first one is on line "
                        f"{self.marks.keys[(*path, key)].line})"))
                    continue
                self.marks.keys[(*path, key)] = self.mark(key_node)
                out[key] = self.walk(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str) and "${" in value:
            return self.substitute(value, node, path)
        return value

    def _lc(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def substitute(self, value: str, node: yaml.Node, path: PathKey) -> Any:
        missing: list[str] = []

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        result = _ENV.sub(repl, value)
        for name in missing:
            self.problems.append(Problem(
                self.file, *self._lc(node), format_path(path),
                f"environment variable {name} is not set (write ${{{name}:-default}} "
                f"to give a default)"))
        plain = isinstance(node, yaml.ScalarNode) and node.style is None
        if plain and _ENV.fullmatch(value):
            # an unquoted ${VAR} takes the type its value would have had in YAML (2 -> int)
            try:
                return load_value(result) if result.strip() else result
            except YamlLimitError as exc:
                self.problems.append(Problem(
                    self.file, *self._lc(node), format_path(path),
                    f"the value of {value.strip()} is {exc.problem}"))
                return None
            except yaml.YAMLError:
                return result
        return result


_PARSED: dict[tuple[str, str, tuple[tuple[str, str | None], ...]], tuple[Any, Marks]] = {}
"""Files already walked without a problem, by (shown name, text, the variables they use).
``run-job`` loads a job up to three times (mode check, the API's job, its compile)."""
_PARSED_MAX = 32


def _load_file(path: Path, problems: list[Problem], env: dict[str, str],
               shown: str) -> tuple[Any, Marks, str]:
    try:
        text, (line, col, why) = read_job_text(path)
    except OSError as exc:
        problems.append(Problem(shown, None, None, "", f"cannot read the file: {exc.strerror}"))
        return None, Marks(default_file=shown), ""
    if text is None:
        problems.append(Problem(shown, line, col, "", why))
        return None, Marks(default_file=shown), ""
    key = (shown, text, tuple((name, env.get(name)) for name, _ in _ENV.findall(text)))
    parsed = _PARSED.get(key)
    if parsed is None:
        walker = _Walker(shown, text, problems, env)
        before = len(problems)
        parsed = walker.load(), walker.marks
        if len(problems) > before:
            return (*parsed, text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    data, marks = parsed
    return _copy(data), Marks(dict(marks.values), dict(marks.keys), marks.default_file), text


def _copy(value: Any) -> Any:
    """A copy of loaded data that the caller may change (mappings, lists and scalars only)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _packaged_jobs_dir() -> Path:
    """The shipped ``jobs/`` folder: ``tickflow/jobs`` in a wheel, ``jobs/`` in a checkout."""
    import tickflow

    here = Path(tickflow.__file__).resolve().parent
    shipped = here / "jobs"
    return shipped if shipped.is_dir() else here.parent / "jobs"


def _include_path(job_path: Path, inc: str) -> Path:
    beside = job_path.parent / inc
    if beside.exists() or Path(inc).is_absolute():
        return beside
    packaged = _packaged_jobs_dir() / inc
    return packaged if packaged.is_file() else beside


def load_job(path: str | os.PathLike[str], overrides: Sequence[str] = (),
             env: dict[str, str] | None = None) -> LoadedJob:
    """Read a job file, its includes and overrides; raise JobSpecError with every problem."""
    env = dict(os.environ) if env is None else env
    problems: list[Problem] = []
    job_path = Path(path)
    shown = str(path)
    data, marks, text = _load_file(job_path, problems, env, shown)
    if data is None and not problems:
        problems.append(Problem(shown, 1, 1, "", "the file is empty; expected a job mapping"))
    if data is not None and not isinstance(data, dict):
        problems.append(Problem(shown, 1, 1, "",
                                f"expected a mapping of job keys, found {type(data).__name__}"))
    if problems:
        raise JobSpecError(problems)
    assert isinstance(data, dict)
    includes = data.get("include") or []
    if isinstance(includes, list) and includes:
        merged_steps: list[Any] = []
        merged_marks = Marks(default_file=shown)
        for i, inc in enumerate(includes):
            if not isinstance(inc, str):
                continue
            inc_path = _include_path(job_path, inc)
            inc_data, inc_marks, _ = _load_file(inc_path, problems, env, str(inc_path))
            if inc_data is None:
                if not any(p.file == str(inc_path) for p in problems):
                    m = marks.find(("include", i))
                    problems.append(Problem(m.file, m.line, m.col, f"include[{i}]",
                                            "the included file is empty"))
                continue
            if not isinstance(inc_data, dict) or set(inc_data) - {"steps"}:
                extra = sorted(set(inc_data) - {"steps"}) if isinstance(inc_data, dict) else []
                m = marks.find(("include", i))
                problems.append(Problem(m.file, m.line, m.col, f"include[{i}]",
                                        "an included file holds only `steps:`"
                                        + (f", found {', '.join(extra)}" if extra else "")))
                continue
            steps = inc_data.get("steps") or []
            shifted = inc_marks.shifted("steps", len(merged_steps))
            merged_marks.values.update({p: m for p, m in shifted.values.items() if p})
            merged_marks.keys.update(shifted.keys)
            merged_steps.extend(steps)
        own = data.get("steps") or []
        own_marks = marks.shifted("steps", len(merged_steps))
        own_marks.values.update({p: m for p, m in merged_marks.values.items()
                                 if p and p[0] == "steps" and p != ("steps",)})
        own_marks.keys.update({p: m for p, m in merged_marks.keys.items() if p[0] == "steps"})
        data["steps"] = merged_steps + (own if isinstance(own, list) else [])
        marks = own_marks
    for text_override in overrides:
        try:
            opath, value = parse_override(text_override)
        except ValueError as exc:
            problems.append(Problem("--set", None, None, "", str(exc)))
            continue
        resolved = resolve_override_path(data, opath)
        err = resolved if isinstance(resolved, str) else apply_override(data, resolved, value)
        if isinstance(resolved, tuple):
            opath = resolved
        if err:
            problems.append(Problem("--set", None, None, format_path(opath), err))
        else:
            marks.values[opath] = Mark(f"--set {text_override}", None, None)
    if problems:
        raise JobSpecError(problems)
    return LoadedJob(data=data, marks=marks, path=shown, text=text)
