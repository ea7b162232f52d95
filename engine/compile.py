"""Compile a validated job into an operator DAG: names resolved, columns checked, steps ordered.

Every problem is collected and reported at once with its file, line and key path; nothing is
instantiated that would touch the network, only source schemas are read.
"""

from __future__ import annotations

import graphlib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

import connectors  # noqa: F401  (registers built-in connectors)
import engine.state.memory  # noqa: F401  (registers the memory backend)
import kernels  # noqa: F401  (registers built-in kernels)
from connectors.base import ConnectorConfig, ConnectorDef, RunContext, get_connector
from engine import __version__
from engine.diagnostics import validation_problems
from engine.errors import CompileError, JobSpecError, Problem, TickflowError
from engine.loader import LoadedJob, Marks, format_path
from engine.registry import KERNELS, STATE_BACKENDS, UnknownNameError, close_matches, did_you_mean
from engine.rules import Rule, RuleError, parse_rule
from engine.spec import ConnectorBlock, JobSpec, StepSpec
from engine.step import BoundKernel


@dataclass
class ConnectorUse:
    """A source or sink of the job: its registry entry and validated config."""

    index: int
    definition: ConnectorDef
    config: ConnectorConfig

    @property
    def label(self) -> str:
        return self.config.id or f"{self.definition.name}{self.index}"


@dataclass
class CompiledJob:
    spec: JobSpec
    loaded: LoadedJob
    context: RunContext
    sources: list[ConnectorUse]
    source_schema: pa.Schema
    steps: list[BoundKernel]
    signals: dict[str, Rule]
    sinks: list[ConnectorUse]
    key: str
    producers: dict[str, str] = field(default_factory=dict)

    @property
    def output_columns(self) -> list[str]:
        cols = list(self.source_schema.names)
        for s in self.steps:
            cols.extend(s.output_columns)
        cols.extend(self.signals)
        return cols


class _Compiler:
    def __init__(self, loaded: LoadedJob):
        self.loaded = loaded
        self.marks: Marks = loaded.marks
        self.problems: list[Problem] = []
        self.step_index: list[int] | None = None

    def problem(self, path: tuple[Any, ...], message: str, at_key: bool = False) -> None:
        m = self.marks.find(path, prefer_key=at_key)
        self.problems.append(Problem(m.file, m.line, m.col, format_path(path), message))

    # ---------------------------------------------------------------- connectors

    def connector(self, role: str, index: int, block: ConnectorBlock,
                  section: str) -> ConnectorUse | None:
        try:
            definition = get_connector(role, block.kind)
        except UnknownNameError as exc:
            self.problem((section, index, "kind"),
                         f"unknown {role} kind {block.kind!r}{did_you_mean(exc.suggestions)}")
            return None
        try:
            config = definition.config(**block.model_dump(exclude_none=False, by_alias=True))
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, self.marks, (section, index),
                                                     definition.config))
            return None
        return ConnectorUse(index, definition, config)

    # ---------------------------------------------------------------- steps

    def bind_step(self, index: int, step: StepSpec, columns_hint: list[str]) -> BoundKernel | None:
        where = ("steps", self.orig(index))
        try:
            definition = KERNELS.get(step.kernel)
        except UnknownNameError as exc:
            self.problem((*where, "kernel"),
                         f"unknown kernel {step.kernel!r}{did_you_mean(exc.suggestions)}")
            return None
        step_id = step.id or step.kernel
        label = f"step '{step_id}', kernel {step.kernel}"
        try:
            params = definition.params(**step.params)
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, self.marks, (*where, "params"),
                                                     definition.params, context=label))
            return None
        except TypeError as exc:
            self.problem((*where, "params"), f"{exc} ({label})")
            return None
        cols = self.remap(list(definition.inputs), step.input, step.inputs,
                          (*where, "inputs"), f"kernel {step.kernel}", "input")
        if cols is None:
            return None
        outs = self.remap(definition.output_names(params, cols), step.output, step.outputs,
                          (*where, "outputs"), f"kernel {step.kernel}", "output")
        if outs is None:
            return None
        return BoundKernel(step_id, definition, params, tuple(cols), tuple(outs))

    def remap(self, defaults: list[str], single: str | None,
              mapping: dict[str, str] | list[str] | None, where: tuple[Any, ...],
              owner: str, what: str) -> list[str] | None:
        """Apply a step's `input:`/`inputs:` (or `output:`/`outputs:`) to the default names."""
        names = list(defaults)
        if single is not None:
            names[0] = single
        elif isinstance(mapping, dict):
            for old, new in mapping.items():
                if old not in defaults:
                    hint = did_you_mean(close_matches(old, defaults))
                    self.problem((*where, old), f"{owner} has no {what} {old!r}{hint} "
                                                f"(its {what}s: {', '.join(defaults)})",
                                 at_key=True)
                    return None
                names[defaults.index(old)] = new
        elif isinstance(mapping, list):
            if len(mapping) != len(defaults):
                self.problem(where, f"expected {len(defaults)} {what} name(s) for "
                                    f"{', '.join(defaults)}, found {len(mapping)}")
                return None
            names = list(mapping)
        return names

    def input_path(self, index: int, step: StepSpec, position: int) -> tuple[Any, ...]:
        if step.input is not None and position == 0:
            return ("steps", self.orig(index), "input")
        if isinstance(step.inputs, list):
            return ("steps", self.orig(index), "inputs", position)
        if isinstance(step.inputs, dict):
            return ("steps", self.orig(index), "inputs")
        return ("steps", self.orig(index), "kernel")

    def output_path(self, index: int, step: StepSpec) -> tuple[Any, ...]:
        if step.output is not None:
            return ("steps", self.orig(index), "output")
        if step.outputs is not None:
            return ("steps", self.orig(index), "outputs")
        return ("steps", self.orig(index), "kernel")

    # ---------------------------------------------------------------- main

    def validate_spec(self) -> JobSpec:
        """Validate the job; on errors, keep going without the bad parts to find more."""
        data = self.loaded.data
        try:
            return JobSpec.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, self.marks, (), JobSpec))
            errors = exc.errors()
        bad_top = {e["loc"][0] for e in errors if e["loc"]}
        bad_steps = {e["loc"][1] for e in errors if len(e["loc"]) > 1
                     and e["loc"][0] == "steps" and isinstance(e["loc"][1], int)}
        if bad_top & {"sources", "key"} or not isinstance(data.get("steps", []), list):
            raise JobSpecError(self.problems)
        partial = {k: v for k, v in data.items() if k not in bad_top or k == "steps"}
        partial.setdefault("name", "?")
        partial.setdefault("mode", "research")
        steps = data.get("steps") or []
        self.step_index = [i for i in range(len(steps)) if i not in bad_steps]
        partial["steps"] = [steps[i] for i in self.step_index]
        try:
            return JobSpec.model_validate(partial)
        except ValidationError:
            raise JobSpecError(self.problems) from None

    def orig(self, i: int) -> int:
        """The step's index in the job file (steps that failed validation are left out)."""
        return self.step_index[i] if self.step_index is not None else i


    def run(self) -> CompiledJob:
        spec = self.validate_spec()
        context = make_context(self.loaded, spec)

        sources = [u for i, b in enumerate(spec.sources)
                   if (u := self.connector("source", i, b, "sources")) is not None]
        sinks = [u for i, b in enumerate(spec.sinks)
                 if (u := self.connector("sink", i, b, "sinks")) is not None]
        if spec.report is not None:
            report_def = get_connector("sink", "report")
            report_cfg = report_def.config(kind="report", **spec.report.model_dump())
            sinks.append(ConnectorUse(len(sinks), report_def, report_cfg))

        if spec.state.backend not in STATE_BACKENDS:
            backends = STATE_BACKENDS.names()
            hint = did_you_mean(close_matches(spec.state.backend, backends))
            self.problem(("state", "backend"),
                         f"unknown state backend {spec.state.backend!r}{hint}"
                         f" (available: {', '.join(backends)})")

        schema = pa.schema([])
        source_ids = [u.config.id for u in sources if u.config.id]
        if sources:
            first = sources[0]
            try:
                schema = first.definition.cls(first.config, context).schema()
            except TickflowError as exc:
                self.problem(("sources", first.index), str(exc))
        if len(spec.sources) > 1:
            self.problem(("sources", 1), "this version runs jobs with one source; "
                                         "multi-source jobs (arbitrage) come with asof_join")
        available = set(schema.names)
        if schema.names and spec.key not in available:
            self.problem(("key",), f"key column {spec.key!r} is not in the source "
                                   f"{did_you_mean(close_matches(spec.key, schema.names))}")

        bound: list[tuple[int, StepSpec, BoundKernel]] = []
        ids: dict[str, int] = {}
        for i, step in enumerate(spec.steps):
            if step.from_ is not None and step.from_ not in source_ids:
                hint = did_you_mean(close_matches(step.from_, source_ids))
                self.problem(("steps", self.orig(i), "from"),
                             f"no source with id {step.from_!r}{hint}")
            b = self.bind_step(i, step, sorted(available))
            if b is None:
                continue
            if b.step_id in ids:
                if step.id is not None:
                    self.problem(("steps", self.orig(i), "id"),
                                 f"step id {b.step_id!r} is already used by "
                                 f"steps[{self.orig(ids[b.step_id])}]")
                    continue
                n = 2
                while f"{b.step_id}_{n}" in ids:
                    n += 1
                b.step_id = f"{b.step_id}_{n}"
            ids[b.step_id] = i
            bound.append((i, step, b))

        producers: dict[str, tuple[int, str]] = {}
        for i, step, b in bound:
            for col in b.output_columns:
                if col in available and schema.names:
                    self.problem(self.output_path(i, step),
                                 f"output column {col!r} of step '{b.step_id}' is already a "
                                 f"column of the source; rename it with `output:`")
                elif col in producers:
                    j, other = producers[col]
                    self.problem(self.output_path(i, step),
                                 f"duplicate output column {col!r}: step '{b.step_id}' and "
                                 f"step '{other}' (steps[{self.orig(j)}]) both write it; "
                                 f"rename one with "
                                 f"`output:`")
                else:
                    producers[col] = (i, b.step_id)

        all_columns = available | set(producers)
        deps: dict[int, set[int]] = {}
        for i, step, b in bound:
            deps[i] = set()
            for pos, col in enumerate(b.input_columns):
                if col in producers:
                    deps[i].add(producers[col][0])
                elif col not in available and schema.names:
                    hint = did_you_mean(close_matches(col, sorted(all_columns)))
                    self.problem(self.input_path(i, step, pos),
                                 f"missing column {col!r} for input "
                                 f"{b.definition.inputs[pos]!r} of step '{b.step_id}': no "
                                 f"source column or earlier step provides it{hint}")
        order = self.order(bound, deps)

        signals: dict[str, Rule] = {}
        for name, text in spec.signals.items():
            if name in all_columns:
                self.problem(("signals", name), f"signal {name!r} has the name of a column; "
                                                f"choose another name", at_key=True)
                continue
            try:
                signals[name] = parse_rule(text, all_columns if schema.names else None)
            except RuleError as exc:
                self.problem(("signals", name), str(exc))
        final_columns = all_columns | set(signals)
        for use in sinks:
            required = use.definition.cls(use.config, context).required_columns()
            for col in required:
                if schema.names and col not in final_columns:
                    hint = did_you_mean(close_matches(col, sorted(final_columns)))
                    section = ("report",) if use.definition.name == "report" and \
                        spec.report is not None and use.index == len(spec.sinks) \
                        else ("sinks", use.index)
                    self.problem(section, f"the {use.definition.name} sink reads column "
                                          f"{col!r}, which no source or step provides{hint}")
        if self.problems:
            raise CompileError(sorted(self.problems,
                                      key=lambda p: (p.file, p.line or 0, p.col or 0)))
        assert self.step_index is None
        steps = [b for i, _, b in sorted(bound, key=lambda t: order.index(t[0]))]
        return CompiledJob(spec=spec, loaded=self.loaded, context=context, sources=sources,
                           source_schema=schema, steps=steps, signals=signals, sinks=sinks,
                           key=spec.key,
                           producers={c: sid for c, (_, sid) in producers.items()})

    def order(self, bound: list[tuple[int, StepSpec, BoundKernel]],
              deps: dict[int, set[int]]) -> list[int]:
        """Topological order that keeps the YAML order wherever the columns allow it."""
        remaining = {i: set(d) for i, d in deps.items()}
        done: list[int] = []
        while remaining:
            ready = sorted(i for i, d in remaining.items() if not d - set(done))
            if not ready:
                names = {i: b.step_id for i, _, b in bound}
                try:
                    graphlib.TopologicalSorter(remaining).prepare()
                    cycle = sorted(remaining)
                except graphlib.CycleError as exc:
                    cycle = list(dict.fromkeys(exc.args[1]))
                chain = " -> ".join(f"'{names[i]}' (steps[{self.orig(i)}])"
                                   for i in [*cycle, cycle[0]])
                self.problem(("steps", self.orig(min(cycle))),
                             f"steps form a cycle through their columns: {chain}; each reads "
                             f"a column written by another step of the cycle")
                return done + sorted(remaining)
            done.append(ready[0])
            del remaining[ready[0]]
        return done


def make_context(loaded: LoadedJob, spec: JobSpec) -> RunContext:
    return RunContext(job_name=spec.name, job_path=loaded.path, job_yaml=loaded.text,
                      job_sha256=hashlib.sha256(loaded.text.encode()).hexdigest(),
                      tickflow_version=__version__, git_commit=git_commit(loaded.path))


def git_commit(path: str) -> str | None:
    """The commit of the repository holding ``path``, if it is in one and git is present."""
    import subprocess
    from pathlib import Path

    try:
        out = subprocess.run(["git", "-C", str(Path(path).resolve().parent), "rev-parse",
                              "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def compile_job(loaded: LoadedJob) -> CompiledJob:
    """Validate and compile; raises JobSpecError/CompileError listing every problem."""
    return _Compiler(loaded).run()
