"""The Python API: load a job, run it on ticks from anywhere, get tables back.

    import tickflow as tf
    job = tf.load_job("jobs/research.yaml", set={"steps.zscore.params.window": 50})
    result = tf.run(job, ticks=frame)        # a path, Arrow table, pandas/polars frame, batches
    result.to_pandas()

Every call into the engine goes through ``tickflow/_engine_bridge.py``; the command line
(``run-job``) runs jobs and backtests through these functions too.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from tickflow import _engine_bridge as bridge
from tickflow._ticks import Ticks, ticks_file
from tickflow.engine.errors import Problem, TickflowError
from tickflow.results import BacktestResult, Result

Sets = Mapping[str, Any] | Sequence[str] | None


def _set_strings(sets: Sets) -> tuple[str, ...]:
    """``{"steps.rsi.params.period": 10}`` or ``["steps.rsi.params.period=10"]`` as --set text.

    Mapping values keep their Python type (JSON is YAML): the string "1" stays a string.
    """
    if sets is None:
        return ()
    if isinstance(sets, Mapping):
        return tuple(f"{k}={json.dumps(v, default=str)}" for k, v in sets.items())
    if isinstance(sets, str):
        return (sets,)
    return tuple(sets)


class Job:
    """A job file as loaded (includes and overrides applied); compiled on first use.

    Loading raises :class:`~tickflow.engine.errors.JobSpecError` for problems in the file
    itself; :meth:`validate` also binds kernels, connectors and rules.
    """

    def __init__(self, path: str | os.PathLike[str], sets: Sets = None):
        self.path = os.fspath(path)
        self.sets = _set_strings(sets)
        self._loaded = bridge.load(self.path, self.sets)
        self._compiled: Any = None
        self._checked: Any = None

    @property
    def name(self) -> str:
        return str(self._loaded.data.get("name", Path(self.path).stem))

    @property
    def mode(self) -> str:
        return str(self._loaded.data.get("mode", "research"))

    @property
    def data(self) -> dict[str, Any]:
        """The job as loaded: plain dicts and lists, after includes and overrides."""
        return self._loaded.data

    def compiled(self, *, without_data: bool = False) -> Any:
        """The engine's compiled job (cached). ``without_data``: a Parquet source whose files
        do not exist yet is checked against its declared schema instead (what `validate` does)."""
        if without_data:
            if self._checked is None:
                self._checked = bridge.compile_loaded(bridge.load(self.path, self.sets),
                                                      without_data=True)
            return self._checked
        if self._compiled is None:
            self._compiled = bridge.compile_loaded(bridge.load(self.path, self.sets))
        return self._compiled

    def validate(self, *, raise_errors: bool = True,
                 without_data: bool = False) -> list[Problem]:
        """Compile the job: [] when valid; else raise, or return the located problems.

        ``without_data``: sources whose files do not exist yet are checked against their
        declared schema, so a job kept in git validates before any data exists.
        """
        try:
            self.compiled(without_data=without_data)
        except TickflowError as exc:
            if raise_errors:
                raise
            return bridge.problems_of(exc)
        return []

    def with_set(self, sets: Sets) -> Job:
        """A copy with more overrides (applied after this job's own)."""
        return Job(self.path, (*self.sets, *_set_strings(sets)))

    @property
    def output_columns(self) -> list[str]:
        return list(self.compiled().output_columns)

    def __repr__(self) -> str:
        extra = f", set={list(self.sets)}" if self.sets else ""
        return f"<Job '{self.name}' ({self.mode}) from {self.path}{extra}>"

    def _repr_html_(self) -> str:
        import html

        steps = self._loaded.data.get("steps") or []
        names = [s.get("id") or s.get("kernel") or s.get("operator") for s in steps
                 if isinstance(s, dict)]
        return (f"<b>tickflow job {html.escape(self.name)}</b> ({html.escape(self.mode)}) from "
                f"<code>{html.escape(self.path)}</code>: {len(names)} steps: "
                f"{html.escape(', '.join(map(str, names)))}")


def load_job(path: str | os.PathLike[str], set: Sets = None) -> Job:
    """Load a job file; ``set`` overrides fields as ``run-job --set`` does."""
    return Job(path, set)


def _job(job_or_path: Job | str | os.PathLike[str], sets: Sets) -> Job:
    if isinstance(job_or_path, Job):
        return job_or_path.with_set(sets) if sets else job_or_path
    return Job(job_or_path, sets)


def _compiled_for(job: Job, ticks_path: str | None) -> Any:
    if ticks_path is None:
        return job.compiled()
    return bridge.compile_loaded(bridge.load(job.path, job.sets, ticks_path))


class _Capture:
    """Collects a run's output batches (or hands them to a queue for :func:`stream`)."""

    def __init__(self, out: queue.Queue[Any] | None = None, stop: threading.Event | None = None):
        self.schema: pa.Schema | None = None
        self.batches: list[pa.RecordBatch] = []
        self.out = out
        self.stop = stop

    def open(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        if self.out is None:
            self.batches.append(batch)
            return
        while True:  # wait for the reader, unless it went away
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            try:
                self.out.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def table(self) -> pa.Table:
        if self.schema is None:
            return pa.table({})
        return pa.Table.from_batches(self.batches, schema=self.schema)


class _Stopped(TickflowError):
    """The reader of :func:`stream` stopped early."""


def run(job_or_path: Job | str | os.PathLike[str], ticks: Ticks = None, *, set: Sets = None,
        workers: int | None = None, sinks: bool = True, reset_state: bool = False,
        max_seconds: float | None = None, keep_table: bool = True,
        progress: Callable[[int], None] | None = None, quiet: bool = True) -> Result:
    """Run a job to the end of its ticks and return its main stream as a table.

    Args:
        ticks: where the first source reads from instead of the job's own: a Parquet path, a
            pyarrow Table, a pandas or polars DataFrame, or an iterator of RecordBatches.
        sinks: also write the job's own sinks (files, reports); their summaries are returned.
        max_seconds: live and export jobs run until this many seconds have passed.
        keep_table: collect the output in ``Result.table`` (``run-job`` does not: the sinks
            hold it).
        progress: called with the number of rows of each batch read.
        quiet: console sinks print nothing.
    """
    job = _job(job_or_path, set)
    capture = _Capture()
    start = time.perf_counter()
    with ticks_file(ticks) as path:
        compiled = _compiled_for(job, path)
        if bridge.is_live(compiled) and path is None:
            if max_seconds is None:
                raise TickflowError(f"job '{job.name}' is a {compiled.spec.mode} job: it runs "
                                    f"until stopped; pass max_seconds=, or use tf.stream(job)")
            summary = bridge.run_live(bridge.with_capture(compiled, capture, sinks),
                                      workers=workers, stop=threading.Event(),
                                      max_seconds=max_seconds, reset_state=reset_state)
            rows_in = int(getattr(summary, "rows", 0))
            counts = dict(getattr(summary, "signal_counts", {}) or {})
            summaries: list[str] = []
            quality = dict(getattr(summary, "quality_counts", {}) or {})
        else:
            if keep_table or not sinks:
                compiled = bridge.with_capture(compiled, capture, sinks)
            summary = bridge.run_finite(compiled, workers=workers, reset_state=reset_state,
                                        progress=progress, quiet=quiet)
            rows_in, counts = summary.rows, dict(summary.signal_counts)
            summaries = list(summary.sink_summaries)
            quality = dict(summary.quality_counts)
    return Result(job.name, capture.table(), rows_in, time.perf_counter() - start, counts,
                  summaries, quality)


def stream(job_or_path: Job | str | os.PathLike[str], ticks: Ticks = None, *,
           set: Sets = None, workers: int | None = None, sinks: bool = False,
           max_seconds: float | None = None, reset_state: bool = False,
           ) -> Iterator[pa.RecordBatch]:
    """Yield the main stream's output batches as they are computed.

    The job runs on a thread; closing the generator (``break`` in a loop) stops it. Live jobs
    run until ``max_seconds`` or until the generator is closed.
    """
    job = _job(job_or_path, set)
    out: queue.Queue[Any] = queue.Queue(maxsize=8)
    stop = threading.Event()
    capture = _Capture(out, stop)
    done = object()
    failure: list[BaseException] = []

    def work(path: str | None) -> None:
        try:
            compiled = bridge.with_capture(_compiled_for(job, path), capture, sinks)
            if bridge.is_live(compiled) and path is None:
                bridge.run_live(compiled, workers=workers, stop=stop, max_seconds=max_seconds,
                                reset_state=reset_state)
            else:
                bridge.run_finite(compiled, workers=workers, reset_state=reset_state)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader, raised there
            if not stop.is_set():
                failure.append(exc)
        finally:
            while True:
                try:
                    out.put(done, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    with ticks_file(ticks) as path:
        thread = threading.Thread(target=work, args=(path,), name="tickflow-stream",
                                  daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is done:
                    break
                yield item
        finally:
            stop.set()
            thread.join()
    if failure:
        raise failure[0]


def backtest(job_or_path: Job | str | os.PathLike[str], ticks: Ticks = None, *,
             set: Sets = None, workers: int | None = None,
             write: bool = False, say: Callable[[str], None] | None = None,
             _asked_by: str = "tf.backtest") -> BacktestResult:
    """Backtest a job's ``strategy:``; returns metrics, trades, equity, and ``.report(path)``.

    Args:
        ticks: raw ticks or a research output to backtest on (as ``run-job --parquet``).
        write: also write the trade log, equity curve and report where the job says.
        say: told about slow preparations (simulating the default ticks).
    """
    job = _job(job_or_path, set)
    start = time.perf_counter()
    with ticks_file(ticks) as path:
        compiled = bridge.load_backtest(job.path, job.sets, path, say, _asked_by)
        bt = bridge.run_backtest(compiled, path, workers, write)
    trades, equity = bridge.trades_and_equity(bt)
    return BacktestResult(job.name, dict(bt.metrics), dict(bt.benchmark_metrics),
                          dict(bt.per_symbol), trades, equity, time.perf_counter() - start,
                          dict(bt.paths), bt)
