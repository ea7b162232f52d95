"""``run-job`` pieces beside the main commands: one kernel's page, shell completion, the
standalone broker, the progress bar and the console.

Kept out of ``engine/cli.py`` so that module stays the parser and the job commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tickflow.engine.errors import SourceError, TickflowError


def console(stderr: bool = False) -> Any:
    """A rich console; to a pipe or file, lines are never wrapped at 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 100_000
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=wide)


# ---------------------------------------------------------------- run-job kernels [NAME]


def list_kernels(args: argparse.Namespace, out: Any) -> int:
    """``run-job kernels``: every kernel as a table (or JSON); ``kernels NAME``: one page."""
    from tickflow.engine.plugins import load_plugins
    from tickflow.engine.reference import kernel_table, kernels_json

    if args.job is not None and is_kernel_name(args.job):
        load_plugins(args.plugins or [])
        sys.stdout.write(kernel_page(args.job))
        return 0
    _load_plugins_for_listing(args)
    if args.json:
        print(kernels_json())
        return 0
    from rich.table import Table

    table = Table(title="registered kernels", show_lines=False)
    for col in ("kernel", "params (default)", "inputs", "outputs", "formula"):
        table.add_column(col, overflow="fold")
    for k in kernel_table():
        params = ", ".join(f"{p['name']}={p['default']!r}" for p in k["params"])
        name = k["name"] + (" (T)" if k["time_window"] else "")
        table.add_row(name, params, ", ".join(k["inputs"]), ", ".join(k["outputs"]),
                      k["formula"])
    out.print(table)
    return 0


def _load_plugins_for_listing(args: argparse.Namespace) -> None:
    """`kernels --plugins a.b` or `kernels JOB`: import those plugins so their kernels show."""
    from tickflow.engine.plugins import load_plugins

    if args.job is not None:
        from tickflow.engine.errors import JobSpecError, Problem
        from tickflow.engine.field_paths import format_path
        from tickflow.engine.loader import load_job
        from tickflow.engine.plugins import load_job_plugins

        loaded = load_job(args.job)
        problems: list[Problem] = []

        def report(path: tuple[Any, ...], message: str) -> None:
            m = loaded.marks.find(path)
            problems.append(Problem(m.file, m.line, m.col, format_path(path), message))

        data = loaded.data
        load_job_plugins(list(data.get("plugins") or []), list(data.get("plugin_paths") or []),
                         loaded.path, report)
        if problems:
            raise JobSpecError(problems)
    load_plugins(args.plugins or [])


def is_kernel_name(text: str) -> bool:
    """``run-job kernels X``: X is a kernel or operator name unless it looks like a file."""
    return not (text.endswith((".yaml", ".yml")) or os.path.sep in text or os.path.exists(text))


def kernel_page(name: str) -> str:
    """One kernel (or operator): formula, inputs and outputs, parameters, a job snippet."""
    from tickflow.engine.reference import kernel_table

    table = {k["name"]: k for k in kernel_table()}
    if name not in table:
        from tickflow.engine.registry import close_matches, did_you_mean

        hint = did_you_mean(close_matches(name, list(table)))
        raise TickflowError(f"kernels: no kernel or operator named {name!r}{hint} "
                            f"(`run-job kernels` lists them)")
    k = table[name]
    lines = [f"{k['name']}  ({k['kind']}, family {k['family']})", "",
             f"formula: {k['formula']}",
             f"inputs:  {', '.join(k['inputs']) or '-'}",
             f"outputs: {', '.join(k['outputs']) or '-'}"]
    if k["time_window"]:
        lines.append("window:  a row count, or a duration such as 30s")
    lines += ["", "parameters:"]
    for p in k["params"]:
        default = p["default"] if p["default"] == "(required)" else repr(p["default"])
        rng = f", {p['range']}" if p["range"] else ""
        lines.append(f"  {p['name']:<16} {p['type']} = {default}{rng}")
        if p["description"]:
            lines.append(f"  {'':<16} {p['description']}")
    if not k["params"]:
        lines.append("  none")
    lines += ["", "example:", *("  " + line for line in kernel_example(k).splitlines())]
    return "\n".join(lines) + "\n"


def kernel_example(k: dict[str, Any]) -> str:
    """A ``steps:`` entry using the kernel with its defaults (required values as ...)."""
    verb = "operator" if k["kind"] == "operator" else "kernel"
    params = [f"{p['name']}: {'...' if p['default'] == '(required)' else _yaml(p['default'])}"
              for p in k["params"] if p["default"] is not None]
    text = f"steps:\n  - id: my_{k['name']}\n    {verb}: {k['name']}\n"
    if params:
        text += f"    params: {{{', '.join(params)}}}\n"
    return text


def _yaml(value: Any) -> str:
    import json

    return "null" if value is None else json.dumps(value) if not isinstance(value, str) \
        else value


# ---------------------------------------------------------------- completion


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash or zsh completion script for ``run-job`` (generated from the parser)."""
    import shtab

    return shtab.complete(parser, shell=shell)


# ---------------------------------------------------------------- run-job broker


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def run_broker(port: int | None, say: Callable[[str], None],
               stop_after_s: float | None = None) -> int:
    """Run the embedded Kafka-protocol broker until Ctrl+C/SIGTERM (or ``stop_after_s``)."""
    import signal
    import threading

    from tickflow.connectors.embedded_broker import EmbeddedBroker

    if port is not None and not port_is_free(port):
        raise SourceError(f"broker: port {port} on 127.0.0.1 is already in use (choose another "
                          f"--port, or leave it out for a free one)")
    broker = EmbeddedBroker(port=port).start()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set())
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        say(f"kafka broker listening on {broker.bootstrap} (memory storage); give jobs "
            f"`--brokers {broker.bootstrap}` and the collector `-k {broker.bootstrap}`; "
            f"Ctrl+C stops it")
        sys.stdout.flush()
        start = time.monotonic()
        while not stop.wait(0.2):
            if not broker.is_running:
                raise SourceError(f"broker: the broker process ended: {broker.log_tail()}")
            if stop_after_s is not None and time.monotonic() - start > stop_after_s:
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        broker.stop()
    say("broker stopped")
    return 0


def broker_sets(data: dict[str, Any], bootstrap: str) -> list[str]:
    """``--brokers ADDR``: the --set overrides pointing every Kafka source and sink at it."""
    sets = []
    for section in ("sources", "sinks"):
        for i, block in enumerate(data.get(section) or []):
            if isinstance(block, dict) and block.get("kind") == "kafka":
                sets.append(f"{section}[{i}].bootstrap={bootstrap}")
    return sets


# ---------------------------------------------------------------- progress


def source_rows(job: Any) -> int | None:
    """Rows the job will read, from Parquet footers (None when unknown, e.g. Kafka)."""
    import pyarrow.parquet as pq

    from tickflow.engine.contract import FileSource

    total = 0
    for use in job.sources:
        source = use.definition.cls(use.config, job.context)
        if not isinstance(source, FileSource):
            return None
        try:
            for path in source.files():
                total += pq.ParquetFile(path).metadata.num_rows
        except (OSError, SourceError, ValueError):
            return None
    return total


def progress_bar(console: Any, enabled: bool, total: int | None,
                 ) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """Rows done of the total, rows/s and time left on a terminal; nothing when not a TTY."""
    if not enabled or not console.is_terminal:
        return None, lambda: None
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [SpinnerColumn()]
    if total:
        columns += [BarColumn(), TextColumn("{task.completed:,} / {task.total:,.0f} rows"),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
                    TimeRemainingColumn()]
    else:
        columns += [TextColumn("{task.completed:,} rows"), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn()]
    progress = Progress(*columns, console=console, transient=True)
    task = progress.add_task("run", total=total or None, rate="")
    progress.start()
    start = time.perf_counter()

    def advance(n: int) -> None:
        progress.advance(task, n)
        done = progress.tasks[0].completed
        elapsed = time.perf_counter() - start
        progress.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else "")

    return advance, progress.stop
