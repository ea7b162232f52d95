"""Compile a validated job into an operator DAG: names resolved, columns checked, steps ordered.

Every problem is collected and reported at once with its file, line and key path; nothing is
instantiated that would touch the network, only source schemas are read.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

import tickflow.engine.builtin_connectors
import tickflow.engine.ml  # registers the model_score batch step
import tickflow.engine.state
import tickflow.kernels  # noqa: F401  (names the built-in kernels; each loads on first use)
from tickflow.engine import __version__
from tickflow.engine.compile_outputs import OutputChecks
from tickflow.engine.compile_streams import StreamPlanner
from tickflow.engine.compiled import CompiledJob, ConnectorUse
from tickflow.engine.connector_registry import get_connector
from tickflow.engine.contract import RunContext, SchemaWithoutData
from tickflow.engine.diagnostics import validation_problems
from tickflow.engine.errors import CompileError, JobSpecError, Problem, TickflowError
from tickflow.engine.field_paths import format_path
from tickflow.engine.io_checks import check_output_paths, check_source_types
from tickflow.engine.limits import check_job_limits, check_param_bounds
from tickflow.engine.loader import LoadedJob, Marks
from tickflow.engine.ml.batch import BatchBindError, BindContext
from tickflow.engine.operators import OPERATORS, BoundOperator
from tickflow.engine.plugins import load_job_plugins
from tickflow.engine.registry import (
    KERNELS,
    STATE_BACKENDS,
    UnknownNameError,
    close_matches,
    did_you_mean,
)
from tickflow.engine.spec import ConnectorBlock, JobSpec, StepSpec
from tickflow.engine.step import BoundKernel

__all__ = ["CompiledJob", "ConnectorUse", "SchemaWithoutData", "compile_job", "git_commit",
           "make_context"]


class _Compiler(StreamPlanner, OutputChecks):
    """Compiles one loaded job, collecting every problem with its location."""

    def __init__(self, loaded: LoadedJob, without_data: bool = False):
        self.loaded = loaded
        self.without_data = without_data
        self.notes: list[str] = []
        self.marks: Marks = loaded.marks
        self.problems: list[Problem] = []
        self.step_index: list[int] | None = None
        self.model_paths: list[str] = []

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
            config = definition.config(**block.model_dump(exclude_none=False, by_alias=True,
                                                          exclude={"from_"}))
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, self.marks, (section, index),
                                                     definition.config))
            return None
        return ConnectorUse(index, definition, config)

    # ---------------------------------------------------------------- steps

    def bind_step(self, index: int, step: StepSpec, columns_hint: list[str]) -> BoundKernel | None:
        where = ("steps", self.orig(index))
        if step.operator is not None:
            return self.bind_operator(index, step)  # type: ignore[return-value]
        assert step.kernel is not None
        try:
            definition = KERNELS.get(step.kernel)
        except UnknownNameError as exc:
            hint = (f"; {step.kernel!r} is an operator (it changes the rows): write "
                    f"`operator: {step.kernel}`" if step.kernel in OPERATORS
                    else did_you_mean(exc.suggestions))
            self.problem((*where, "kernel"), f"unknown kernel {step.kernel!r}{hint}")
            return None
        step_id = step.id or step.kernel
        label = f"step '{step_id}', kernel {step.kernel}"
        params = self.params(definition.params, step, where, label)
        if params is None:
            return None
        defaults = (definition.input_names(params) if definition.kind == "batch"
                    else list(definition.inputs))
        cols = self.remap(defaults, step.input, step.inputs,
                          (*where, "inputs"), f"kernel {step.kernel}", "input")
        if cols is None:
            return None
        outs = self.remap(definition.output_names(params, cols), step.output, step.outputs,
                          (*where, "outputs"), f"kernel {step.kernel}", "output")
        if outs is None:
            return None
        if definition.kind == "batch":  # not numba: runs on whole batches (engine/ml/batch.py)
            try:
                return definition.bind(step_id, params, tuple(cols), tuple(outs),
                                       BindContext(tuple(self.model_paths)))
            except BatchBindError as exc:
                self.problem((*where, "params", exc.param) if exc.param else where,
                             f"{exc} ({label})")
                return None
        return BoundKernel(step_id, definition, params, tuple(cols), tuple(outs))

    def bind_operator(self, index: int, step: StepSpec) -> BoundOperator | None:
        """An operator step: params validated; its streams are resolved by the stream plan."""
        where = ("steps", self.orig(index))
        name = step.operator
        assert name is not None
        try:
            definition = OPERATORS.get(name)
        except UnknownNameError as exc:
            hint = (f"; {name!r} is a kernel (it keeps the rows): write `kernel: {name}`"
                    if name in KERNELS else did_you_mean(exc.suggestions))
            self.problem((*where, "operator"), f"unknown operator {name!r}{hint}")
            return None
        step_id = step.id or name
        label = f"step '{step_id}', operator {name}"
        params = self.params(definition.params, step, where, label)
        if params is None:
            return None
        cols = self.remap(list(definition.inputs), step.input, step.inputs,
                          (*where, "inputs"), f"operator {name}", "input")
        outs = self.remap(list(definition.outputs), step.output, step.outputs,
                          (*where, "outputs"), f"operator {name}", "output")
        if cols is None or outs is None:
            return None
        key = getattr(params, "key", None) or getattr(params, "by", None) or self.job_key
        return BoundOperator(step_id, definition, params, tuple(cols), tuple(outs), {}, key)

    def params(self, model: Any, step: StepSpec, where: tuple[Any, ...],
               label: str) -> Any | None:
        """A step's params validated by its kernel's or operator's model; None on problems."""
        try:
            params = model(**step.params)
            check_param_bounds(params, where, label, self.problem)
            return params
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, self.marks, (*where, "params"),
                                                     model, context=label))
        except TypeError as exc:
            self.problem((*where, "params"), f"{exc} ({label})")
        return None

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
        return ("steps", self.orig(index), "kernel" if step.operator is None else "operator")

    def output_path(self, index: int, step: StepSpec) -> tuple[Any, ...]:
        if step.output is not None:
            return ("steps", self.orig(index), "output")
        if step.outputs is not None:
            return ("steps", self.orig(index), "outputs")
        return ("steps", self.orig(index), "kernel" if step.operator is None else "operator")

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
        self.model_paths = spec.model_paths
        load_job_plugins(spec.plugins, spec.plugin_paths, self.loaded.path, self.problem)

        sources = [u for i, b in enumerate(spec.sources)
                   if (u := self.connector("source", i, b, "sources")) is not None]
        sinks = [u for i, b in enumerate(spec.sinks)
                 if (u := self.connector("sink", i, b, "sinks")) is not None]
        report_use: ConnectorUse | None = None
        if spec.report is not None:
            report_def = get_connector("sink", "report")
            report_cfg = report_def.config(kind="report", **spec.report.model_dump())
            report_use = ConnectorUse(len(sinks), report_def, report_cfg)
            sinks.append(report_use)
        if spec.live_report is not None and spec.mode not in ("live", "export"):
            self.problem(("live_report",), "written only by live and export runs; "
                                           f"this job's mode is {spec.mode!r}", at_key=True)

        if spec.state.backend not in STATE_BACKENDS:
            backends = STATE_BACKENDS.names()
            hint = did_you_mean(close_matches(spec.state.backend, backends))
            self.problem(("state", "backend"),
                         f"unknown state backend {spec.state.backend!r}{hint}"
                         f" (available: {', '.join(backends)})")

        self.job_key = spec.key
        schemas: dict[int, pa.Schema] = {}
        for use in sources:
            try:
                source = use.definition.cls(use.config, context)
                declared = (source.declared_schema() if self.without_data
                            and isinstance(source, SchemaWithoutData) else None)
                if declared is not None:
                    schemas[use.index], reason = declared
                    m = self.marks.find(("sources", use.index))
                    self.notes.append(f"{m.file}:{m.line}:{m.col}: sources[{use.index}]: "
                                      f"{reason}")
                else:
                    schemas[use.index] = source.schema()
            except TickflowError as exc:
                self.problem(("sources", use.index), str(exc))
        for i, block in enumerate(spec.sources):
            if block.from_ is not None:
                self.problem(("sources", i, "from"), "a source reads no stream; `from:` is for "
                                                     "steps and sinks")
        schema = schemas.get(sources[0].index, pa.schema([])) if sources else pa.schema([])
        available = set(schema.names)
        if schema.names and spec.key not in available:
            self.problem(("key",), f"key column {spec.key!r} is not in the source "
                                   f"{did_you_mean(close_matches(spec.key, schema.names))}")

        bound: list[tuple[int, StepSpec, Any]] = []
        ids: dict[str, int] = {}
        for i, step in enumerate(spec.steps):
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

        streams, main = self.plan_streams(spec, sources, schemas, bound)
        if len(streams) > 1 and spec.state.page_keys is not None:
            self.problem(("state", "page_keys"), "state paging keeps one stream's kernel state; "
                                                 "this job has several streams (operator steps "
                                                 "or several sources): drop page_keys")
        signals = self.bind_signals(spec, streams, main, [b.step_id for _, _, b in bound])
        sink_streams = self.place_sinks(spec, sinks, report_use, streams, main, context)
        check_source_types(streams, schemas, spec.key, self.problem)
        check_output_paths(sources, sinks, len(spec.sinks), self.loaded.path, self.problem)
        check_job_limits(spec, sources, [(("steps", self.orig(i)), b) for i, _, b in bound],
                         self.problem)
        if self.problems:
            raise CompileError(sorted(self.problems,
                                      key=lambda p: (p.file, p.line or 0, p.col or 0)))
        assert self.step_index is None
        steps = [b for st in streams.values() for b in st.steps]
        return CompiledJob(spec=spec, loaded=self.loaded, context=context, sources=sources,
                           source_schema=schema, steps=steps, signals=signals, sinks=sinks,
                           key=spec.key, producers=self.producers, streams=streams,
                           main_stream=main, sink_streams=sink_streams, notes=self.notes)

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


def compile_job(loaded: LoadedJob, *, without_data: bool = False) -> CompiledJob:
    """Validate and compile; raises JobSpecError/CompileError listing every problem.

    ``without_data`` (``run-job validate``): a source whose files do not exist yet is checked
    against the schema it declares instead of failing; ``CompiledJob.notes`` says which.
    """
    return _Compiler(loaded, without_data).run()
