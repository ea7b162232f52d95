"""The compiled job as a graph: text for the terminal, Mermaid or Graphviz dot for docs."""

from __future__ import annotations

from dataclasses import dataclass

from tickflow.engine.compile import CompiledJob


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # source | operator | kernel | signals | sink
    label: str
    adds: tuple[str, ...]


def build_graph(job: CompiledJob) -> tuple[list[Node], list[tuple[str, str, str]]]:
    """Nodes in execution order and edges (from, to, columns carried or stream read).

    Each stream is drawn as its origin (a source or an operator step) followed by its kernel
    steps; an operator's edges come from the last node of each stream it reads.
    """
    nodes: list[Node] = []
    edges: list[tuple[str, str, str]] = []
    tails: dict[str, str] = {}
    for name, stream in job.streams.items():
        op = stream.operator
        if op is None:
            use = stream.origin
            sid = f"source:{use.label}"
            nodes.append(Node(sid, "source", f"{use.label} ({use.definition.name})",
                              tuple(stream.base_columns)))
        else:
            sid = f"operator:{op.step_id}"
            first = job.streams[next(iter(op.streams.values()))]
            adds = tuple(c for c in stream.base_columns if c not in first.columns)
            nodes.append(Node(sid, "operator", f"{op.step_id} ({op.definition.name})", adds))
            for port, read in op.streams.items():
                label = f"{port}: {read}" if len(op.streams) > 1 else f"stream {read}"
                edges.append((tails[read], sid, label))
        producer = dict.fromkeys(stream.base_columns, sid)
        last = sid
        for step in stream.steps:
            nid = f"step:{step.step_id}"
            nodes.append(Node(nid, "kernel", f"{step.step_id} ({step.definition.name})",
                              step.output_columns))
            by_parent: dict[str, list[str]] = {}
            for c in step.input_columns:
                by_parent.setdefault(producer.get(c, "?"), []).append(c)
            for parent, cols in by_parent.items():
                edges.append((parent, nid, ", ".join(cols)))
            for c in step.output_columns:
                producer[c] = nid
            last = nid
        if stream.signals:
            nodes.append(Node("signals", "signals", "signals", tuple(stream.signals)))
            by_parent = {}
            for rule in stream.signals.values():
                for c in sorted(rule.columns):
                    by_parent.setdefault(producer.get(c, "?"), []).append(c)
            for parent, cols in by_parent.items():
                edges.append((parent, "signals", ", ".join(sorted(set(cols)))))
            last = "signals"
        tails[name] = last
    for use, read in zip(job.sinks, job.sink_streams, strict=True):
        nid = f"sink:{use.label}"
        nodes.append(Node(nid, "sink", f"{use.label} ({use.definition.name})", ()))
        edges.append((tails[read], nid, "all columns"))
    return nodes, edges


def render_text(job: CompiledJob) -> str:
    nodes, edges = build_graph(job)
    parents: dict[str, list[str]] = {}
    for a, b, _ in edges:
        parents.setdefault(b, []).append(a.split(":", 1)[-1])
    streams = f", {len(job.streams)} streams" if job.is_multi_stream else ""
    lines = [f"job {job.spec.name} ({job.spec.mode}): {len(job.steps)} steps, "
             f"{len(job.output_columns)} output columns{streams}"]
    for n in nodes:
        after = f"  <- {', '.join(dict.fromkeys(parents[n.id]))}" if n.id in parents else ""
        lines.append(f"[{n.kind}] {n.label}{after}")
        if n.adds:
            lines.append(f"    + {', '.join(n.adds)}")
    return "\n".join(lines) + "\n"


def _safe(node_id: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in node_id)


def render_mermaid(job: CompiledJob) -> str:
    nodes, edges = build_graph(job)
    shapes = {"source": ("[(", ")]"), "kernel": ("[", "]"), "signals": ("{{", "}}"),
              "sink": ("[/", "/]"), "operator": ("[[", "]]")}
    out = ["flowchart TD"]
    for n in nodes:
        open_, close = shapes[n.kind]
        adds = f"<br/>+ {', '.join(n.adds)}" if n.adds and n.kind != "source" else ""
        out.append(f'    {_safe(n.id)}{open_}"{n.label}{adds}"{close}')
    for a, b, cols in edges:
        if a == "?":
            continue
        out.append(f'    {_safe(a)} -->|"{cols}"| {_safe(b)}')
    return "\n".join(out) + "\n"


def render_dot(job: CompiledJob) -> str:
    nodes, edges = build_graph(job)
    shapes = {"source": "cylinder", "kernel": "box", "signals": "diamond", "sink": "folder",
              "operator": "box3d"}
    out = [f'digraph "{job.spec.name}" {{', "  rankdir=TB;"]
    for n in nodes:
        adds = f"\\n+ {', '.join(n.adds)}" if n.adds and n.kind != "source" else ""
        out.append(f'  {_safe(n.id)} [shape={shapes[n.kind]}, label="{n.label}{adds}"];')
    for a, b, cols in edges:
        if a == "?":
            continue
        out.append(f'  {_safe(a)} -> {_safe(b)} [label="{cols}"];')
    out.append("}")
    return "\n".join(out) + "\n"
