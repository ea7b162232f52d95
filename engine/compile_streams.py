"""The compiler's stream planning: which stream each step reads, and each stream's columns.

A mixin of the compiler (engine/compile.py): it reports through ``self.problem`` and locates
steps with ``self.orig``, ``self.input_path`` and ``self.output_path``. The rules for
``from:``, the current stream and the main one are in engine/streams.py.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from tickflow.engine.compiled import ConnectorUse
from tickflow.engine.operators import BoundOperator, OperatorSpecError
from tickflow.engine.registry import close_matches, did_you_mean
from tickflow.engine.spec import JobSpec, StepSpec
from tickflow.engine.step import BoundKernel
from tickflow.engine.streams import Stream, stream_names_hint


class StreamPlanner:
    """Plans the job's streams and checks the kernel steps of each (outputs, inputs, order)."""

    problem: Callable[..., None]
    orig: Callable[[int], int]
    input_path: Callable[[int, StepSpec, int], tuple[Any, ...]]
    output_path: Callable[[int, StepSpec], tuple[Any, ...]]
    producers: dict[str, str]

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
