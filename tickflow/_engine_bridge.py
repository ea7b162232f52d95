"""Every call the Python API makes into the engine, in one place.

The executors are being unified into one driver; when their entry points move, this module is
the only one of ``tickflow/`` to re-point. It takes and returns engine objects and plain values,
and knows nothing of notebooks or DataFrames (``tickflow/api.py`` does).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from tickflow.connectors.base import ConnectorConfig, ConnectorDef, Sink
from tickflow.engine.compile import CompiledJob, ConnectorUse, compile_job
from tickflow.engine.errors import JobSpecError, Problem, TickflowError
from tickflow.engine.loader import LoadedJob, load_job


def load(path: str, sets: Sequence[str], ticks_path: str | None = None) -> LoadedJob:
    """Read a job file; with ``ticks_path`` its first source becomes that Parquet file."""
    loaded = load_job(path, overrides=list(sets))
    if ticks_path is not None:
        sources = loaded.data.get("sources") or []
        first = sources[0] if sources and isinstance(sources[0], dict) else {}
        replacement = {"kind": "parquet", "path": ticks_path}
        if first.get("id"):
            replacement["id"] = first["id"]
        loaded.data["sources"] = [replacement, *sources[1:]]
    return loaded


def compile_loaded(loaded: LoadedJob, without_data: bool = False) -> CompiledJob:
    return compile_job(loaded, without_data=without_data)


def problems_of(exc: TickflowError) -> list[Problem]:
    """The located problems an error carries (one unlocated problem for a plain error)."""
    problems = getattr(exc, "problems", None)
    return list(problems) if problems else [Problem("", None, None, "", str(exc))]


# ---------------------------------------------------------------- running a job


class _CaptureConfig(ConnectorConfig):
    kind: str = "python"


class _CaptureSink(Sink):
    """Hands the schema and each output batch to the Python object kept in the run context
    (``open(schema)``, ``write(batch)``); it is never registered, so no job file can name it."""

    def open(self, schema: pa.Schema) -> None:
        self.context.extra["tickflow.capture"].open(schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.context.extra["tickflow.capture"].write(batch)


_CAPTURE = ConnectorDef("python", "sink", _CaptureSink, _CaptureConfig, "batches to Python")


def with_capture(job: CompiledJob, capture: Any, keep_sinks: bool) -> CompiledJob:
    """The job with one more sink, on its main stream, feeding ``capture`` (the job's own
    sinks are kept or dropped)."""
    context = dataclasses.replace(job.context, extra={**job.context.extra,
                                                      "tickflow.capture": capture})
    sinks = list(job.sinks) if keep_sinks else []
    streams = list(job.sink_streams) if keep_sinks else []
    use = ConnectorUse(len(sinks), _CAPTURE, _CaptureConfig())
    return dataclasses.replace(job, context=context, sinks=[*sinks, use],
                               sink_streams=[*streams, job.main_stream])


def is_live(job: CompiledJob) -> bool:
    return job.spec.mode in ("live", "export")


def run_finite(job: CompiledJob, *, workers: int | None, reset_state: bool,
               progress: Callable[[int], None] | None = None, quiet: bool = True) -> Any:
    """Run to the end of the sources on the local executor; returns its RunSummary."""
    from tickflow.engine.executors.local import run_local

    job.context.quiet = quiet
    return run_local(job, workers=workers, progress=progress, reset_state=reset_state)


def run_live(job: CompiledJob, *, workers: int | None, stop: threading.Event,
             max_seconds: float | None, reset_state: bool) -> Any:
    """Run a live/export job until ``stop`` is set or ``max_seconds`` pass."""
    from tickflow.engine.executors.live import LiveRunner
    from tickflow.engine.live_view import LiveView

    view = LiveView(list(job.signals), job.key, quiet=True)
    runner = LiveRunner(job, workers=workers or 1, view=view, stop=stop,
                        max_seconds=max_seconds, reset_state=reset_state)
    summary = runner.run()
    if runner.errors:
        raise runner.errors[0]
    return summary


def run_dask(job: CompiledJob, cluster: str | None, workers: int | None, console: Any,
             show_progress: bool, started: Any = None) -> Any:
    from tickflow.engine.executors.dask import run_dask_from_cli

    return run_dask_from_cli(job, cluster, workers, console, show_progress=show_progress,
                             started=started)


def run_live_cli(job: CompiledJob, args: Any, workers: int, console: Any) -> int:
    from tickflow.engine.executors.live import run_live_from_cli
    from tickflow.engine.executors.live_members import group_source, run_members_from_cli

    if group_source(job) is not None:  # `group:`: this process is one of N members
        return run_members_from_cli(job, args, workers, console)
    return run_live_from_cli(job, args, workers, console)


def run_live_graph_cli(job: CompiledJob, args: Any, workers: int, console: Any) -> int:
    """A graph of several streaming sources (arbitrage, multi-timeframe) run live."""
    from tickflow.engine.executors.live_graph import run_live_graph_from_cli
    from tickflow.engine.executors.live_members import group_source, run_members_from_cli

    if group_source(job) is not None:  # `group:` (refused there when it has several sources)
        return run_members_from_cli(job, args, workers, console)
    return run_live_graph_from_cli(job, args, workers, console)


# ---------------------------------------------------------------- backtests


def is_backtest_job(path: str, sets: Sequence[str]) -> bool:
    return load_job(path, overrides=list(sets)).data.get("mode") == "backtest"


def load_backtest(path: str, sets: Sequence[str], ticks_path: str | None,
                  say: Callable[[str], None] | None = None,
                  asked_by: str = "tf.backtest") -> CompiledJob:
    """A compiled backtest job; a job without ``strategy:`` is refused, naming ``asked_by``."""
    from tickflow.engine.backtest.run import load_backtest_job

    job = load_backtest_job(path, list(sets), ticks_path, say)
    if job.spec.strategy is None:
        m = job.loaded.marks.find(("mode",))
        raise JobSpecError([Problem(m.file, m.line, m.col, "mode",
                                    f"{asked_by} run backtests; this is a {job.spec.mode} "
                                    f"job without a `strategy:` block")])
    return job


def run_backtest(job: CompiledJob, ticks_path: str | None, workers: int | None,
                 write: bool) -> Any:
    from tickflow.engine.backtest.run import run_backtest as engine_backtest

    workers = workers or job.spec.executor.workers or (os.cpu_count() or 1)
    return engine_backtest(job, ticks_path, workers, write=write)


def run_sweep_cli(job: CompiledJob, path: str, sets: Sequence[str], ticks_path: str | None,
                  workers: int, console: Any, quiet: bool) -> int:
    from tickflow.engine.backtest.sweep_run import run_sweep_command

    return run_sweep_command(job, path, list(sets), ticks_path, workers, console, quiet)


def trades_and_equity(bt: Any) -> tuple[pa.Table, pa.Table]:
    from tickflow.engine.backtest.report import equity_table, trade_table

    return trade_table(bt), equity_table(bt)


def write_backtest_report(bt: Any, path: str) -> str:
    """The HTML report of a backtest, written by the engine's report writer."""
    from pathlib import Path

    from tickflow.engine.backtest.report import backtest_html

    out = Path(os.path.expanduser(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(backtest_html(bt), encoding="utf-8")
    return str(out)


def print_backtest(bt: Any, console: Any, seconds: float) -> None:
    from tickflow.engine.backtest.report import print_backtest as engine_print

    engine_print(bt, console, seconds)


def backtest_output_paths(job: CompiledJob) -> dict[str, str]:
    from tickflow.engine.backtest.run import output_paths

    return {k: str(v) for k, v in output_paths(job).items()}
