"""Compile a validated job into an operator DAG: names resolved, columns checked, steps ordered.

Every problem is collected and reported at once with its file, line and key path; nothing is
instantiated that would touch the network, only source schemas are read.
"""

from __future__ import annotations

import graphlib
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import ValidationError

import tickflow.engine.builtin_connectors  # noqa: F401  (names the built-in connectors)
import tickflow.engine.ml  # registers the model_score batch step
import tickflow.engine.state  # noqa: F401  (names the state backends)
import tickflow.kernels  # noqa: F401  (registers built-in kernels)
from tickflow.engine.connector_registry import ConnectorDef, get_connector
from tickflow.engine.contract import ConnectorConfig, RunContext
from tickflow.engine import __version__
from tickflow.engine.diagnostics import validation_problems
from tickflow.engine.errors import CompileError, JobSpecError, Problem, TickflowError
from tickflow.engine.io_checks import check_output_paths, check_source_types
from tickflow.engine.limits import check_job_limits, check_param_bounds
from tickflow.engine.loader import LoadedJob, Marks, format_path
from tickflow.engine.ml.batch import BatchBindError, BindContext
from tickflow.engine.operators import OPERATORS, BoundOperator, OperatorSpecError
from tickflow.engine.plugins import load_job_plugins
from tickflow.engine.registry import KERNELS, STATE_BACKENDS, UnknownNameError, close_matches, did_you_mean
from tickflow.engine.rules import Rule, RuleError, parse_rule
from tickflow.engine.spec import ConnectorBlock, JobSpec, StepSpec
from tickflow.engine.step import BoundKernel
from tickflow.engine.streams import Stream, stream_names_hint


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
    # the stream plan (engine/streams.py): every stream by name, in creation order
    streams: dict[str, Stream] = field(default_factory=dict)
    main_stream: str = ""
    sink_streams: list[str] = field(default_factory=list)  # the stream each sink writes
    # located one-line notes for `run-job validate` (a source validated by its declared schema)
    notes: list[str] = field(default_factory=list)

    @property
    def is_multi_stream(self) -> bool:
        """More than one stream (several sources or operator steps): run by the stream graph."""
        return len(self.streams) > 1

    @property
    def operators(self) -> list[BoundOperator]:
        return [s.operator for s in self.streams.values() if s.operator is not None]

    @property
    def output_columns(self) -> list[str]:
        if self.is_multi_stream:
            return list(self.streams[self.main_stream].columns)
        cols = list(self.source_schema.names)
        for s in self.steps:
            cols.extend(s.output_columns)
        cols.extend(self.signals)
        return cols


@runtime_checkable
class SchemaWithoutData(Protocol):
    """A source whose data may not exist yet (a file made later) but whose schema is declared.

    ``declared_schema()`` returns None when the data is there (its real schema then counts), and
    otherwise the declared schema with a short reason, so ``run-job validate`` needs no data.
    """

    def declared_schema(self) -> tuple[pa.Schema, str] | None: ...


class _Compiler:
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
        if spec.report is not None:
            report_def = get_connector("sink", "report")
            report_cfg = report_def.config(kind="report", **spec.report.model_dump())
            sinks.append(ConnectorUse(len(sinks), report_def, report_cfg))
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
        main_stream = streams.get(main)
        all_columns = set(main_stream.columns) if main_stream else set()
        known = bool(main_stream and main_stream.known and main_stream.columns)
        signals: dict[str, Rule] = {}
        for name, text in spec.signals.items():
            if name in all_columns:
                self.problem(("signals", name), f"signal {name!r} has the name of a column; "
                                                f"choose another name", at_key=True)
                continue
            try:
                signals[name] = parse_rule(text, all_columns if known else None)
            except RuleError as exc:
                self.problem(("signals", name), str(exc))
        if spec.strategy is not None or spec.sweep is not None or spec.mode == "backtest":
            from tickflow.engine.backtest.plan import strategy_problems

            for path, message, at_key in strategy_problems(
                    spec, all_columns if known else None, [b.step_id for _, _, b in bound]):
                self.problem(path, message, at_key=at_key)
        if main_stream is not None:
            main_stream.signals = signals
            main_stream.columns = [*main_stream.columns, *signals]
        sink_streams: list[str] = []
        for use in sinks:
            is_report = use.definition.name == "report" and spec.report is not None and \
                use.index == len(spec.sinks)
            section = ("report",) if is_report else ("sinks", use.index)
            wanted = None if is_report else spec.sinks[use.index].from_
            if wanted is not None and wanted not in streams:
                hint = did_you_mean(close_matches(wanted, list(streams)))
                self.problem((*section, "from"), f"no stream named {wanted!r}{hint}"
                                                 f"{stream_names_hint(streams, '')}")
                continue
            target = streams.get(wanted or main)
            sink_streams.append(wanted or main)
            if target is None or not target.known or not target.columns:
                continue
            final_columns = set(target.columns)
            required = use.definition.cls(use.config, context).required_columns()
            for col in required:
                if col not in final_columns:
                    hint = did_you_mean(close_matches(col, sorted(final_columns)))
                    self.problem(section, f"the {use.definition.name} sink reads column "
                                          f"{col!r}, which no source or step provides{hint}")
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

    # ---------------------------------------------------------------- streams

    def plan_streams(self, spec: JobSpec, sources: list[ConnectorUse],
                     schemas: dict[int, pa.Schema], bound: list[tuple[int, StepSpec, Any]],
                     ) -> tuple[dict[str, Stream], str]:
        """Assign every step to the stream it reads and check each stream's columns.

        See engine/streams.py for the rules (``from:``, the current stream, the main one).
        """
        streams: dict[str, Stream] = {}
        for use in sources:
            cols = list(schemas[use.index].names) if use.index in schemas else []
            streams[use.label] = Stream(use.label, use, spec.key, cols, known=bool(cols))
        later = {b.step_id: i for i, _, b in bound if isinstance(b, BoundOperator)}
        current = sources[0].label if sources else ""
        segments: dict[str, list[tuple[int, StepSpec, Any]]] = {n: [] for n in streams}

        def resolve(i: int, name: str | None, path: tuple[Any, ...]) -> str | None:
            if name is None:
                return current if current in streams else None
            if name in streams:
                return name
            if name in later:
                self.problem(path, f"stream {name!r} is made by a later step "
                                   f"(steps[{self.orig(later[name])}]); a step reads only "
                                   f"sources and the streams of operator steps above it")
            else:
                hint = did_you_mean(close_matches(name, list(dict.fromkeys([*streams, *later]))))
                self.problem(path, f"no stream named {name!r}{hint}"
                                   f"{stream_names_hint(streams)}")
            return None

        self.producers: dict[str, str] = {}
        for i, step, b in bound:
            where = ("steps", self.orig(i))
            if not isinstance(b, BoundOperator):
                target = resolve(i, step.from_, (*where, "from"))
                if target is not None:
                    segments[target].append((i, step, b))
                continue
            if b.step_id in streams:
                self.problem((*where, "id"), f"step id {b.step_id!r} is already the name of a "
                                             f"source stream; choose another id")
                continue
            left_param = getattr(b.params, "left", None)
            if left_param is not None and step.from_ is not None and left_param != step.from_:
                self.problem((*where, "params", "left"), f"`left: {left_param}` and "
                                                         f"`from: {step.from_}` disagree")
                continue
            ports: dict[str, str | None] = {}
            for port in b.ports:
                if port == "right":
                    ports[port] = resolve(i, b.params.right, (*where, "params", "right"))
                elif left_param is not None:
                    ports[port] = resolve(i, left_param, (*where, "params", "left"))
                else:
                    ports[port] = resolve(i, step.from_, (*where, "from"))
            if any(v is None for v in ports.values()):
                continue
            b.streams = {p: v for p, v in ports.items() if v is not None}
            streams[b.step_id] = Stream(b.step_id, b, b.key)
            segments[b.step_id] = []
            current = b.step_id
        # streams are checked in creation order: an operator's inputs are complete before it
        for name, stream in streams.items():
            op = stream.operator
            if op is not None:
                inputs = [streams[s] for s in op.streams.values()]
                stream.known = all(s.known for s in inputs)
                if stream.known:
                    try:
                        stream.base_columns = op.definition.cls.check(
                            op, {p: list(streams[s].columns) for p, s in op.streams.items()})
                    except OperatorSpecError as exc:
                        i = later[op.step_id]
                        self.problem(("steps", self.orig(i), *exc.where), str(exc))
                        stream.known = False
                op.columns = tuple(stream.base_columns)
            items = segments[name]
            if stream.is_source and name != (sources[0].label if sources else "") and \
                    items and stream.known and spec.key not in stream.base_columns:
                i, step, b = items[0]
                self.problem(("steps", self.orig(i), "from"),
                             f"key column {spec.key!r} is not in stream {name!r}, so its "
                             f"kernel steps cannot keep per-key state")
            produced, order = self.segment(stream, items)
            self.producers.update(produced)
            stream.steps = [b for i, _, b in sorted(items, key=lambda t: order.index(t[0]))]
            stream.columns = [*stream.base_columns,
                              *[c for b in stream.steps for c in b.output_columns]]
        return streams, current

    def segment(self, stream: Stream, bound: list[tuple[int, StepSpec, Any]],
                ) -> tuple[dict[str, str], list[int]]:
        """Check a stream's kernel steps: duplicate outputs, missing inputs, cycles."""
        available = set(stream.base_columns)
        known = stream.known and bool(stream.base_columns)
        where = "the source" if stream.is_source else f"stream '{stream.name}'"
        producers: dict[str, tuple[int, str]] = {}
        for i, step, b in bound:
            for col in b.output_columns:
                if col in available and known:
                    self.problem(self.output_path(i, step),
                                 f"output column {col!r} of step '{b.step_id}' is already a "
                                 f"column of {where}; rename it with `output:`")
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
        origin = "source column" if stream.is_source else f"column of stream '{stream.name}'"
        deps: dict[int, set[int]] = {}
        for i, step, b in bound:
            deps[i] = set()
            for pos, col in enumerate(b.input_columns):
                if col in producers:
                    deps[i].add(producers[col][0])
                elif col not in available and known:
                    hint = did_you_mean(close_matches(col, sorted(all_columns)))
                    self.problem(self.input_path(i, step, pos),
                                 f"missing column {col!r} for input "
                                 f"{b.definition.inputs[pos]!r} of step '{b.step_id}': no "
                                 f"{origin} or earlier step provides it{hint}")
        batch_ids = {i: b.step_id for i, _, b in bound if b.definition.kind == "batch"}
        for i, step, b in bound:  # numba steps run first, batch steps after them on the batch
            for pos, col in enumerate(b.input_columns):
                j = producers.get(col, (-1, ""))[0]
                if b.definition.kind != "batch" and j in batch_ids:
                    self.problem(self.input_path(i, step, pos),
                                 f"step '{b.step_id}' reads {col!r} from batch step "
                                 f"'{batch_ids[j]}', but kernels run before batch steps; "
                                 f"use it in signals or a later job")
        order = self.order(bound, deps)
        return {c: sid for c, (_, sid) in producers.items()}, order

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


def compile_job(loaded: LoadedJob, *, without_data: bool = False) -> CompiledJob:
    """Validate and compile; raises JobSpecError/CompileError listing every problem.

    ``without_data`` (``run-job validate``): a source whose files do not exist yet is checked
    against the schema it declares instead of failing; ``CompiledJob.notes`` says which.
    """
    return _Compiler(loaded, without_data).run()
