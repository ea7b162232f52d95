"""``run-job``: run, validate, draw and inspect jobs.

    run-job JOB [--set key.path=value ...] [--workers N] [--quiet]
    run-job validate JOB          exit 0 when valid, 2 with every problem located when not
    run-job graph JOB [--format text|mermaid|dot] [-o FILE]
    run-job kernels [--json]
    run-job simulate -o FILE [--rows N --symbols N --seed S]
    run-job docs [--out DIR]

User mistakes print located messages and no traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import TickflowError

COMMANDS = ("validate", "graph", "kernels", "simulate", "docs", "run")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load(args: argparse.Namespace) -> Any:
    from engine.compile import compile_job
    from engine.loader import load_job

    return compile_job(load_job(args.job, overrides=args.set or []))


def cmd_validate(args: argparse.Namespace) -> int:
    job = _load(args)
    print(f"{args.job}: valid ({job.spec.mode} job '{job.spec.name}', {len(job.steps)} steps, "
          f"{len(job.output_columns)} output columns)")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from engine.dag import render_dot, render_mermaid, render_text

    job = _load(args)
    render = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot}[args.format]
    text = render(job)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_kernels(args: argparse.Namespace) -> int:
    from engine.reference import kernel_table, kernels_json

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
    _console().print(table)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from connectors.simulator import write_simulated_parquet

    info = write_simulated_parquet(args.output, rows=args.rows, symbols=args.symbols,
                                   seed=args.seed)
    print(f"wrote {info['rows']:,} simulated ticks of {len(info['symbols'])} symbols "
          f"to {info['path']}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from engine.reference import job_reference_markdown, kernels_markdown

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job-reference.md").write_text(job_reference_markdown())
    (out / "kernel-reference.md").write_text(kernels_markdown())
    print(f"wrote {out / 'job-reference.md'} and {out / 'kernel-reference.md'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from engine.executors.local import run_local

    job = _load(args)
    spec = job.spec
    workers = args.workers or spec.executor.workers or (os.cpu_count() or 1)
    quiet = args.quiet
    job.context.quiet = quiet
    console = _console()
    if not quiet:
        console.print(f"[bold]tickflow[/] job [cyan]{spec.name}[/] ({spec.mode}): "
                      f"{len(job.steps)} steps, {len(job.output_columns)} columns, "
                      f"{workers} workers")
    progress_cb, stop = _progress(console, enabled=spec.executor.progress and not quiet)
    try:
        summary = run_local(job, workers=workers, progress=progress_cb)
    finally:
        stop()
    if not quiet:
        console.print(f"processed {summary.rows:,} rows in {summary.seconds:.2f} s "
                      f"({summary.rows_per_second:,.0f} rows/s)")
        if summary.signal_counts:
            counts = ", ".join(f"{k}={v:,}" for k, v in summary.signal_counts.items())
            console.print(f"signals: {counts}")
        for line in summary.sink_summaries:
            console.print(line)
    return 0


def _progress(console: Any, enabled: bool) -> tuple[Callable[[int], None] | None,
                                                    Callable[[], None]]:
    """A rows/s progress bar on a terminal; nothing when output is not a TTY."""
    if not enabled or not console.is_terminal:
        return None, lambda: None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.completed:,} rows"),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task("run", total=None, rate="")
    progress.start()
    import time

    start = time.perf_counter()

    def advance(n: int) -> None:
        progress.advance(task, n)
        done = progress.tasks[0].completed
        elapsed = time.perf_counter() - start
        progress.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else "")

    return advance, progress.stop


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run-job", description="Run and inspect tickflow jobs.",
                                epilog="run-job JOB is short for run-job run JOB.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def job_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("job", help="job YAML file")
        sp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                        help="override a field, e.g. steps[2].params.window=50")
        sp.add_argument("--debug", action="store_true", help="show tracebacks")
        return sp

    run = job_cmd("run", "run a job")
    run.add_argument("--workers", type=int, default=None, help="worker threads")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    job_cmd("validate", "check a job file; exit 2 with located problems when invalid")
    graph = job_cmd("graph", "print the job's operator DAG")
    graph.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    graph.add_argument("-o", "--output", help="write to a file instead of stdout")
    k = sub.add_parser("kernels", help="list registered kernels")
    k.add_argument("--json", action="store_true")
    sim = sub.add_parser("simulate", help="write simulated ticks to Parquet")
    sim.add_argument("-o", "--output", required=True)
    sim.add_argument("--rows", type=int, default=1_000_000)
    sim.add_argument("--symbols", type=int, default=14)
    sim.add_argument("--seed", type=int, default=7)
    docs = sub.add_parser("docs", help="regenerate the job and kernel references")
    docs.add_argument("--out", default="docs")
    return p


HANDLERS = {"validate": cmd_validate, "graph": cmd_graph, "kernels": cmd_kernels,
            "simulate": cmd_simulate, "docs": cmd_docs, "run": cmd_run}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        argv.insert(argv.index(first), "run")
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except TickflowError as exc:
        if args.debug:
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        problems = getattr(exc, "problems", None)
        if problems and len(problems) > 1:
            print(f"{len(problems)} problems", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
