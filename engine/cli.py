"""``run-job``: run, validate, draw and inspect jobs.

    run-job JOB [--set key.path=value ...] [--workers N] [--cluster ADDR|local] [--quiet]
                  [--no-view]
    run-job BACKTEST_JOB [--parquet FILE] [--sweep]   mode: backtest (engine/backtest/run.py)
    run-job validate JOB          exit 0 when valid, 2 with every problem located when not
    run-job graph JOB [--format text|mermaid|dot] [-o FILE]
    run-job kernels [--json] [--plugins MODULE ...] [JOB]   JOB: list its plugins' kernels too
    run-job train SPEC            fit the next-return model on a research output (engine/train.py)
    run-job simulate -o FILE [--rows N --symbols N --seed S --ticks-per-second R]
    run-job state JOB [--key K] [--checkpoint N]   checkpoints, keys, sizes; one key's state
    run-job kernels NAME          one kernel: formula, parameters with defaults, an example
    run-job partition IN OUT_DIR [--by symbol] [--parts N]   a dataset split by key hash (Dask)
    run-job docs [--out DIR]      job reference, and the kernel reference split by family
    run-job collect coinbase [--products ...] (-k BOOTSTRAP | -F -o FILE | --jsonl FILE)
    run-job serve coinbase [--frames FILE] [--port 8765] [--speed 1x|10x|max]   offline feed
    run-job broker [--port N]     the embedded Kafka broker on its own, until Ctrl+C
    run-job completion bash|zsh   a shell completion script
    run-job --version

Jobs, validation and backtests go through the Python API (``tickflow/api.py``), as a notebook
would.

User mistakes print located messages and no traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tickflow.engine import own_process, start_up_gc
from tickflow.engine.cli_parser import build_parser  # re-exported: tests and completion
from tickflow.engine.errors import TickflowError

COMMANDS = ("validate", "graph", "kernels", "simulate", "partition", "docs", "run", "train",
            "state", "collect", "serve", "broker", "completion")


def _console(stderr: bool = False) -> Any:
    from tickflow.engine.cli_tools import console

    return console(stderr)


def _api_job(args: argparse.Namespace) -> Any:
    """The job through the Python API, with --set, --state-backend and --brokers applied."""
    import tickflow.api as tf

    overrides = list(args.set or [])
    if getattr(args, "state_backend", None):
        overrides.append(f"state.backend={args.state_backend}")
    job = tf.load_job(args.job, set=overrides)
    if getattr(args, "brokers", None):
        from tickflow.engine.cli_tools import broker_sets

        job = job.with_set(broker_sets(job.data, args.brokers))
    return job


def _load(args: argparse.Namespace) -> Any:
    return _api_job(args).compiled()


def cmd_validate(args: argparse.Namespace) -> int:
    api_job = _api_job(args)
    api_job.validate(without_data=True)  # configs kept in git are checked before data exists
    job = api_job.compiled(without_data=True)
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
    from tickflow.engine.cli_tools import list_kernels

    return list_kernels(args, _console())


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


def cmd_partition(args: argparse.Namespace) -> int:
    from tickflow.engine.executors.partitioned_dataset import MANIFEST, write_partitioned_dataset

    made = write_partitioned_dataset(args.input, args.output, by=args.by, parts=args.parts,
                                     compression=args.compression)
    keys = sum(len(f.keys) for f in made.files)
    print(f"wrote {made.rows:,} rows of {keys} {args.by} values into {made.parts} parts "
          f"under {made.directory} (manifest {MANIFEST})")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from tickflow.engine.reference import reference_files

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"run-job docs: --out {out} is a file; it takes a folder (the reference is "
              f"several files: job-reference.md, kernel-reference.md, kernels/*.md)",
              file=sys.stderr)
        return 2
    files = reference_files()
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    print(f"wrote {len(files)} reference files under {out}: {', '.join(sorted(files))}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    started = None  # --cluster local: its workers start while this compiles (dask_start.py)
    if args.cluster == "local" and not (args.parquet or args.sweep or args.replay):
        from tickflow.engine.executors.dask_start import start_for_job

        started = start_for_job(args.job, args.set or [], args.workers, dashboard=not args.quiet)
        if started is not None:  # this process ends with the run: no close of the cluster
            started.exit_with_process = _OWN_PROCESS
    try:
        code = _run(args, started)
    finally:
        if started is not None:  # unused after an error (a run closes it itself)
            started.close(wait=False)
    if started is not None and started.left_open:
        from tickflow.engine.executors.dask_start import exit_now

        exit_now(code)
    return code


def _run(args: argparse.Namespace, started: Any) -> int:
    from tickflow import _engine_bridge as bridge

    if args.parquet or args.sweep or bridge.is_backtest_job(args.job, args.set or []):
        start_up_gc.resume()
        return _backtest(args)
    api_job = _api_job(args)
    job = api_job.compiled()
    if args.workers is not None:
        from tickflow.engine.errors import CompileError
        from tickflow.engine.limits import workers_option_problems

        if problems := workers_option_problems(job, args.workers):
            raise CompileError(problems)
    spec = job.spec
    from tickflow.engine.limits import worker_lanes

    workers = worker_lanes(spec, args.workers)
    quiet = args.quiet
    job.context.quiet = quiet
    console = None if quiet else _console()  # rich costs ~30 ms to import: not for --quiet
    if not quiet:
        console.print(f"[bold]tickflow[/] job [cyan]{spec.name}[/] ({spec.mode}): "
                      f"{len(job.steps)} steps, {len(job.output_columns)} columns, "
                      f"{workers} worker{'s' if workers != 1 else ''}")
    live = spec.mode in ("live", "export") or args.replay
    from tickflow.engine.contract import StreamingSource

    streaming = bool(job.sources) and all(
        isinstance(u.definition.cls(u.config, job.context), StreamingSource) for u in job.sources)
    if streaming and not args.replay and not args.cluster and \
            (spec.mode == "arbitrage" or (live and job.is_multi_stream)):
        start_up_gc.resume()
        return bridge.run_live_graph_cli(job, args, workers, console or _console())
    if live and job.is_multi_stream:
        from tickflow.engine.errors import CompileError, Problem

        raise CompileError([Problem(args.job, None, None, "mode", "jobs with several streams "
                                    "(operator steps or several sources) run live on streaming "
                                    "sources (kind: kafka) without --replay")])
    if live:
        from tickflow.engine.live_view import rich_view_allowed

        start_up_gc.resume()
        with rich_view_allowed(not args.no_view):
            return bridge.run_live_cli(job, args, workers, console or _console())
    if args.cluster or spec.executor.kind == "dask":
        start_up_gc.resume()
        summary = bridge.run_dask(job, args.cluster, args.workers, console or _console(),
                                  show_progress=spec.executor.progress and not quiet,
                                  started=started)
        rows, seconds = summary.rows, summary.seconds
        counts, sink_lines = summary.signal_counts, summary.sink_summaries
        quality = dict(getattr(summary, "quality_counts", {}) or {})
    else:
        import tickflow.api as tf
        from tickflow.engine.cli_tools import progress_bar, source_rows

        enabled = console is not None and spec.executor.progress and console.is_terminal
        progress_cb, stop = progress_bar(console, enabled,
                                         source_rows(job) if enabled else None)
        try:
            result = tf.run(api_job, workers=workers, keep_table=False,
                            progress=start_up_gc.resume_after_first_call(progress_cb),
                            reset_state=args.reset_state, quiet=quiet)
        finally:
            stop()
        rows, seconds = result.rows_in, result.seconds
        counts, sink_lines = result.signal_counts, result.sink_summaries
        quality = result.quality_counts
    if not quiet:
        rate = rows / seconds if seconds > 0 else 0.0
        console.print(f"processed {rows:,} rows in {seconds:.2f} s ({rate:,.0f} rows/s)")
        if counts:
            console.print(f"signals: {', '.join(f'{k}={v:,}' for k, v in counts.items())}")
        if quality:
            shown = ", ".join(f"{k}={v:,}" for k, v in sorted(quality.items()))
            console.print(f"tick quality: {shown} (policy: quality.bad_price="
                          f"{spec.quality.bad_price}, quality.out_of_order="
                          f"{spec.quality.out_of_order or 'fail'})", markup=False)
        for line in sink_lines:
            console.print(line)
    return 0


_FLAGS = "--parquet and --sweep"


def _backtest(args: argparse.Namespace) -> int:
    """``run-job JOB`` for a backtest job (``--parquet``, ``--sweep``), via ``tf.backtest``."""
    import os
    import time

    import tickflow.api as tf
    from tickflow import _engine_bridge as bridge

    if args.cluster:  # a sweep's points go to Dask (engine/backtest/sweep_dask.py)
        args.set = [*(args.set or []), "executor.kind=dask", f"executor.address={args.cluster}"]
    console = _console()
    say = None if args.quiet else console.print
    sets = list(args.set or [])
    if args.sweep:
        job = bridge.load_backtest(args.job, sets, args.parquet, say, _FLAGS)
        workers = args.workers or job.spec.executor.workers or (os.cpu_count() or 1)
        return bridge.run_sweep_cli(job, args.job, sets, args.parquet, workers, console,
                                    args.quiet)
    start = time.perf_counter()
    result = tf.backtest(args.job, ticks=args.parquet, set=sets, workers=args.workers,
                         write=True, say=say, _asked_by=_FLAGS)
    if not args.quiet:
        bridge.print_backtest(result._engine, console, time.perf_counter() - start)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from tickflow.connectors.collector_cli import main as collect_main

    return _delegate(collect_main, args)


def cmd_serve(args: argparse.Namespace) -> int:
    from tickflow.connectors.serve_cli import main as serve_main

    return _delegate(serve_main, args)


def _delegate(command: Callable[[list[str]], int], args: argparse.Namespace) -> int:
    """The connector's own parser reads the rest, ``--help`` included (exit 0)."""
    try:
        return command([*args.rest] if args.exchange is None else [args.exchange, *args.rest])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


def cmd_broker(args: argparse.Namespace) -> int:
    from tickflow.engine.cli_tools import run_broker

    return run_broker(args.port, lambda text: print(text, flush=True), args.max_seconds)


def cmd_completion(args: argparse.Namespace) -> int:
    from tickflow.engine.cli_tools import completion_script

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return 0


HANDLERS = {"validate": cmd_validate, "graph": cmd_graph, "kernels": cmd_kernels,
            "simulate": cmd_simulate, "partition": cmd_partition, "docs": cmd_docs,
            "run": cmd_run, "train": cmd_train,
            "state": lambda args: _state_command(args),
            "collect": cmd_collect, "serve": cmd_serve, "broker": cmd_broker,
            "completion": cmd_completion}


def _state_command(args: argparse.Namespace) -> int:
    from tickflow.engine.state_cli import cmd_state

    return cmd_state(_load(args), args)


def _out_of_memory(exc: MemoryError, args: argparse.Namespace) -> str:
    """Name the command, job and, when the traceback shows one, the step that ran out."""
    step: Any = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame that knows its step wins
        for name in ("step", "self", "bound"):
            candidate = tb.tb_frame.f_locals.get(name)
            if isinstance(getattr(candidate, "step_id", None), str):
                step = candidate
        tb = tb.tb_next
    job = getattr(args, "job", None) or getattr(args, "spec", None)
    where = f"{job}: " if job else ""
    what = f" in step '{step.step_id}'" if step is not None else ""
    detail = f" ({exc})" if str(exc) else ""
    return (f"{where}out of memory{what} during `run-job {args.command}`{detail}; use smaller "
            f"windows, fewer workers or smaller morsels (--debug shows the traceback)")


def main(argv: Sequence[str] | None = None) -> int:
    """``run-job``; with ``argv`` None this is the process's own command line, which exits next:
    it then starts without cyclic GC passes over start-up and ends without the final ones
    (engine/start_up_gc.py). When the process is ``run-job`` itself, numba starts without
    scipy.linalg and the process ends without the interpreter's teardown
    (engine/own_process.py)."""
    if argv is None:
        own = own_process.is_run_job(main)
        if own:
            own_process.numba_blas_alone()
        argv = sys.argv[1:]
        code = _own_process(argv)
        if own and next((a for a in argv if not a.startswith("-")), None) not in _SERVERS:
            own_process.exit_now(code)
        return code
    return _main(list(argv))


_OWN_PROCESS = False  # run-job is this process's own command line (main() without argv)
_SERVERS = ("collect", "serve", "broker")  # their own loops and processes: the usual exit


def _own_process(argv: list[str]) -> int:
    global _OWN_PROCESS
    _OWN_PROCESS = True
    start_up_gc.pause()  # resumed once the run is going (engine/start_up_gc.py)
    try:
        return _main(argv)
    finally:
        start_up_gc.before_exit()


def _main(argv: list[str]) -> int:
    if argv and argv[0] in ("collect", "serve"):  # their own parsers read the rest (--help)
        rest = argv[1:]
        exchange = rest[0] if rest and not rest[0].startswith("-") else None
        args = argparse.Namespace(command=argv[0], exchange=exchange, debug=False,
                                  rest=rest[1:] if exchange else rest)
    else:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first is not None and first not in COMMANDS:
            argv.insert(argv.index(first), "run")
        args = build_parser().parse_args(argv)
    if args.command != "run":
        start_up_gc.resume()  # only a run's start-up is worth the care
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
    except MemoryError as exc:
        if args.debug:
            traceback.print_exc()
        print(_out_of_memory(exc, args), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
