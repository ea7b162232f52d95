"""``run-job``: run, validate, draw and inspect jobs.

    run-job JOB [--set key.path=value ...] [--workers N] [--cluster ADDR|local] [--quiet]
    run-job BACKTEST_JOB [--parquet FILE] [--sweep]   mode: backtest (engine/backtest/run.py)
    run-job validate JOB          exit 0 when valid, 2 with every problem located when not
    run-job graph JOB [--format text|mermaid|dot] [-o FILE]
    run-job kernels [--json] [--plugins MODULE ...] [JOB]   JOB: list its plugins' kernels too
    run-job train SPEC            fit the next-return model on a research output (engine/train.py)
    run-job simulate -o FILE [--rows N --symbols N --seed S --ticks-per-second R]
    run-job state JOB [--key K] [--checkpoint N]   checkpoints, keys, sizes; one key's state
    run-job docs [--out DIR]
    run-job collect coinbase [--products ...] (-k BOOTSTRAP | -F -o FILE | --jsonl FILE)
    run-job serve coinbase [--frames FILE] [--port 8765] [--speed 1x|10x|max]   offline feed

User mistakes print located messages and no traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tickflow.engine.errors import TickflowError

COMMANDS = ("validate", "graph", "kernels", "simulate", "docs", "run", "train", "state",
            "collect", "serve")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load(args: argparse.Namespace, without_data: bool = False) -> Any:
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job

    overrides = list(args.set or [])
    if getattr(args, "state_backend", None):
        overrides.append(f"state.backend={args.state_backend}")
    return compile_job(load_job(args.job, overrides=overrides), without_data=without_data)


def cmd_validate(args: argparse.Namespace) -> int:
    job = _load(args, without_data=True)  # configs in git are checked before any data exists
    for note in job.notes:
        print(note)
    print(f"{args.job}: valid ({job.spec.mode} job '{job.spec.name}', {len(job.steps)} steps, "
          f"{len(job.output_columns)} output columns)")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from tickflow.engine.dag import render_dot, render_mermaid, render_text

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
    from tickflow.engine.reference import kernel_table, kernels_json

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
    _console().print(table)
    return 0


def _load_plugins_for_listing(args: argparse.Namespace) -> None:
    """`kernels --plugins a.b` or `kernels JOB`: import those plugins so their kernels show."""
    from tickflow.engine.plugins import load_plugins

    if args.job is not None:
        from tickflow.engine.errors import JobSpecError, Problem
        from tickflow.engine.loader import format_path, load_job
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


def cmd_train(args: argparse.Namespace) -> int:
    from tickflow.engine.train import load_train_spec, train

    report = train(load_train_spec(args.spec, args.set or []))
    auc = "n/a" if report.auc is None else f"{report.auc:.4f}"
    print(f"trained on {report.train_rows:,} rows, tested on {report.test_rows:,}: "
          f"accuracy {report.accuracy:.4f}, AUC {auc}, base rate {report.base_rate:.4f}")
    top = ", ".join(f"{k} {v:.3f}" for k, v in list(report.feature_importances.items())[:5])
    print(f"importances: {top}")
    print(f"wrote {report.model_path}" + (f" and {report.onnx_path}" if report.onnx_path
                                          else "") + " with its .report.json/.report.md")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from tickflow.connectors.simulator import write_simulated_parquet

    if not 0 < args.ticks_per_second <= 1e7:
        print(f"simulate: --ticks-per-second must be in (0, 1e7], found {args.ticks_per_second}",
              file=sys.stderr)
        return 2
    info = write_simulated_parquet(args.output, rows=args.rows, symbols=args.symbols,
                                   seed=args.seed, ticks_per_second=args.ticks_per_second)
    print(f"wrote {info['rows']:,} simulated ticks of {len(info['symbols'])} symbols "
          f"to {info['path']}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from tickflow.engine.reference import job_reference_markdown, kernels_markdown

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job-reference.md").write_text(job_reference_markdown())
    (out / "kernel-reference.md").write_text(kernels_markdown())
    print(f"wrote {out / 'job-reference.md'} and {out / 'kernel-reference.md'}")
    return 0


def _is_backtest(args: argparse.Namespace) -> bool:
    """Whether ``run-job`` was asked for a backtest (the job's mode, or a backtest flag).

    Decided before the backtest package is imported: a research run does not need it.
    """
    if getattr(args, "parquet", None) or getattr(args, "sweep", False):
        return True
    from tickflow.engine.loader import load_job

    return load_job(args.job, overrides=args.set or []).data.get("mode") == "backtest"


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from tickflow.engine.executors.local import run_local

    if _is_backtest(args):
        from tickflow.engine.backtest.run import run_backtest_command

        if args.cluster:  # a sweep's points go to Dask (engine/backtest/sweep_dask.py)
            args.set = [*(args.set or []), "executor.kind=dask",
                        f"executor.address={args.cluster}"]
        if getattr(args, "sweep", False):
            from tickflow.engine.backtest.sweep_run import run_sweep_cli

            return run_sweep_cli(args, _console())
        return run_backtest_command(args, _console())
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
    live = spec.mode in ("live", "export") or args.replay
    if (args.cluster or live) and getattr(job, "is_multi_stream", False):
        from tickflow.engine.errors import CompileError, Problem

        where = "--cluster" if args.cluster else "mode"
        raise CompileError([Problem(args.job, None, None, where, "jobs with several streams "
                                    "(operator steps or several sources) run on the local "
                                    "executor over finite sources only, for now")])
    if spec.mode in ("live", "export") or args.replay:
        from tickflow.engine.executors.live import run_live_from_cli

        return run_live_from_cli(job, args, workers, console)
    if args.cluster or spec.executor.kind == "dask":
        from tickflow.engine.executors.dask import run_dask_from_cli

        summary = run_dask_from_cli(job, args.cluster, args.workers, console,
                                    show_progress=spec.executor.progress and not quiet)
    else:
        progress_cb, stop = _progress(console, enabled=spec.executor.progress and not quiet)
        try:
            summary = run_local(job, workers=workers, progress=progress_cb,
                                reset_state=args.reset_state)
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


def cmd_collect(args: argparse.Namespace) -> int:
    from tickflow.connectors.collector import main as collect_main

    return collect_main([args.exchange, *args.rest])


def cmd_serve(args: argparse.Namespace) -> int:
    from tickflow.connectors.serve_cli import main as serve_main

    return serve_main([args.exchange, *args.rest])


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
    run.add_argument("--cluster", metavar="tcp://HOST:8786|local", default=None,
                     help="run on a Dask cluster (local: start a LocalCluster of --workers "
                          "processes); overrides executor.address")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--parquet", metavar="FILE", default=None,
                     help="backtest: ticks or a research output to run on (features are "
                          "reused when the job that wrote it computes them the same way)")
    run.add_argument("--sweep", action="store_true",
                     help="backtest: run the job's `sweep:` block instead of one backtest")
    run.add_argument("--replay", metavar="FILE", default=None,
                     help="live/export: replay a Parquet or JSON Lines capture into the "
                          "source topic (embedded broker), end when it is consumed")
    run.add_argument("--speed", default="max", metavar="10x|max",
                     help="replay speed relative to the recorded timestamps (default max)")
    run.add_argument("--follow", action="store_true",
                     help="with --replay: keep running after the capture is consumed")
    run.add_argument("--max-seconds", type=float, default=None, metavar="S",
                     help="live/export: end the run after S seconds")
    run.add_argument("--state-backend", metavar="memory|rocksdb|tiledb", default=None,
                     help="where kernel state is checkpointed; overrides state.backend")
    run.add_argument("--reset-state", action="store_true",
                     help="forget the job's checkpoints and start from empty state")
    state = job_cmd("state", "list a job's checkpoints, keys and sizes; print one key's state")
    state.add_argument("--state-backend", metavar="memory|rocksdb|tiledb", default=None,
                       help="the backend the state was written with (default: the job's)")
    state.add_argument("--key", help="print this key's state (e.g. --key BTC-USD)")
    state.add_argument("--checkpoint", type=int, default=None,
                       help="checkpoint number (default: the newest good one)")
    state.add_argument("--keys", type=int, default=20, metavar="N",
                       help="list the first N keys (default 20; 0 for none)")
    job_cmd("validate", "check a job file; exit 2 with located problems when invalid")
    graph = job_cmd("graph", "print the job's operator DAG")
    graph.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    graph.add_argument("-o", "--output", help="write to a file instead of stdout")
    k = sub.add_parser("kernels", help="list registered kernels")
    k.add_argument("--json", action="store_true")
    k.add_argument("--plugins", action="append", metavar="MODULE",
                   help="import a plugin module first (repeatable)")
    k.add_argument("job", nargs="?", help="a job file whose plugins to load")
    tr = sub.add_parser("train", help="fit the next-return RandomForest (engine/train.py)")
    tr.add_argument("spec", help="training spec YAML")
    tr.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                    help="override a field, e.g. model.n_estimators=50")
    tr.add_argument("--debug", action="store_true", help="show tracebacks")
    sim = sub.add_parser("simulate", help="write simulated ticks to Parquet")
    sim.add_argument("-o", "--output", required=True)
    sim.add_argument("--rows", type=int, default=1_000_000)
    sim.add_argument("--symbols", type=int, default=14)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--ticks-per-second", type=float, default=200.0,
                     help="mean arrival rate, all symbols together (at 200, 2M ticks span "
                          "about 3 hours; at 5, several days)")
    docs = sub.add_parser("docs", help="regenerate the job and kernel references")
    docs.add_argument("--out", default="docs")
    for name, help_text in (("collect", "collect exchange tickers into Kafka, Parquet or JSONL "
                             "(tickflow-collect -h lists the options)"),
                            ("serve", "serve an exchange's WebSocket protocol on loopback, "
                             "replaying recorded frames (offline demos and tests)")):
        sp = sub.add_parser(name, help=help_text, add_help=False)
        sp.add_argument("exchange", choices=("coinbase", "binance", "kraken"))
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


HANDLERS = {"validate": cmd_validate, "graph": cmd_graph, "kernels": cmd_kernels,
            "simulate": cmd_simulate, "docs": cmd_docs, "run": cmd_run, "train": cmd_train,
            "state": lambda args: _state_command(args),
            "collect": cmd_collect, "serve": cmd_serve}


def _state_command(args: argparse.Namespace) -> int:
    from tickflow.engine.state_cli import cmd_state

    return cmd_state(_load(args), args)


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
