"""Run a job on an endless stream: consume a batch, compute, write, then commit its offsets.

The features come from the same ``Pipeline`` as research runs (keyed state carried from batch
to batch), so a live run and a research run over the same ticks give the same columns. The
order per batch is what makes a kill or a broker outage lose nothing and repeat nothing:
outputs are written first, offsets committed only once the sinks have acknowledged them.
Sinks that are durable once acknowledged (Kafka) get commits as their queues drain (and at
least every half second, by a flush); with any other sink (Parquet, whose file is complete only
when closed) offsets are committed once, after the sinks are closed.

With an on-disk state backend (``--state-backend rocksdb|tiledb``) the run checkpoints like a
research run (engine/state/recovery.py): kernel and rule state, the key index, the Kafka
offsets of the next message per partition and the sinks' positions, every ``state.checkpoint
.every``; a restart resumes from the newest good checkpoint. A run from empty state
checkpoints once before it reads, so a kill at any moment resumes somewhere. The last
checkpoint is never *final*: a stream has no end, the next run goes on from it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.engine.compile import CompiledJob
from tickflow.engine.errors import SourceError, TickflowError
from tickflow.engine.executors.local import Pipeline
from tickflow.engine.contract import AbortableSink, AcknowledgedSink, StreamingSource
from tickflow.engine.live_view import LiveView
from tickflow.engine.runtime.quality import QualityStage
from tickflow.engine.state.recovery import PipelineState


@dataclass
class LiveSummary:
    """Totals of a live run (printed at its end, returned to tests and benchmarks)."""

    ticks: int = 0
    messages: int = 0
    seconds: float = 0.0
    signal_counts: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    quality_counts: dict[str, int] = field(default_factory=dict)  # the driver's quality stage
    latency_us: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    sink_summaries: list[str] = field(default_factory=list)
    replayed: int | None = None

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    def latency_percentiles_ms(self) -> dict[str, float]:
        """p50/p99/p99.9 tick-to-signal latency in ms (empty when nothing was measured)."""
        if self.latency_us.size == 0:
            return {}
        p = np.percentile(self.latency_us, [50, 99, 99.9]) / 1000
        return {"p50": float(p[0]), "p99": float(p[1]), "p99.9": float(p[2])}

    def lines(self) -> list[str]:
        dead = sum(self.dead_letters.values())
        out = [f"ticks: {self.ticks:,} of {self.messages:,} messages in {self.seconds:.2f} s "
               f"({self.ticks_per_second:,.0f} ticks/s)"]
        if self.signal_counts:
            out.append("signals: " + ", ".join(f"{k}={v:,}"
                                               for k, v in self.signal_counts.items()))
        detail = ", ".join(f"{k}={v:,}" for k, v in sorted(self.dead_letters.items()))
        out.append(f"dead letters: {dead:,}" + (f" [{detail}]" if detail else ""))
        if self.quality_counts:
            out.append("tick quality: " + ", ".join(f"{k}={v:,}" for k, v in
                                                    sorted(self.quality_counts.items())))
        pct = self.latency_percentiles_ms()
        if pct:
            out.append("tick-to-signal latency: " + ", ".join(f"{k} {v:.2f} ms"
                                                              for k, v in pct.items()))
        out.extend(self.sink_summaries)
        return out


class LiveRunner:
    """Drives one live or export job until it is stopped or its input ends.

    Args:
        job: the compiled job; its first source must be a streaming one (``kind: kafka``).
        workers: kernel worker threads.
        view: where signals and per-symbol state go (a quiet one by default).
        stop: set it (SIGTERM, Ctrl+C, a test) to finish the current batch and end cleanly.
        max_seconds: end after this long.
        on_open: called with the opened source (e.g. to start a replay into its broker).
    """

    def __init__(self, job: CompiledJob, *, workers: int = 1, view: LiveView | None = None,
                 stop: threading.Event | None = None, max_seconds: float | None = None,
                 on_open: Callable[[Any], None] | None = None, reset_state: bool = False):
        self.job = job
        self.reset_state = reset_state
        self.workers = workers
        self.view = view or LiveView(list(job.signals), job.key, quiet=True)
        self.stop = stop or threading.Event()
        self.max_seconds = max_seconds
        self.on_open = on_open
        self.expected_messages: int | None = None
        self.commit_interval_s = 0.5
        self.summary = LiveSummary()
        self.source: Any = None
        self.errors: list[BaseException] = []
        self.recorder: Any = None  # the live_report: page's counts, set by run()

    def _open_source(self) -> Any:
        use = self.job.sources[0]
        source = use.definition.cls(use.config, self.job.context, status=self.view.say) \
            if use.definition.name == "kafka" else use.definition.cls(use.config,
                                                                      self.job.context)
        if not isinstance(source, StreamingSource):
            msg = (f"{self.job.spec.mode} mode needs a streaming source (kind: kafka); "
                   f"source {use.label!r} is kind {use.definition.name!r}")
            raise SourceError(msg)
        source.open()
        self.job.context.extra["kafka_bootstrap"] = source.bootstrap
        return source

    def run(self) -> LiveSummary:
        from tickflow.engine.state.recovery import open_checkpointer

        from tickflow.connectors.live_report import LiveReportRecorder

        summary = self.summary
        # the live summary page's counts: None unless the job has a live_report: block
        recorder = self.recorder = LiveReportRecorder.for_job(self.job)
        checkpointer = open_checkpointer(self.job, reset=self.reset_state)
        source = self.source = self._open_source()
        if checkpointer is not None and getattr(source, "broker", None) is not None \
                and checkpointer.store.list():
            # a broker started by this run keeps its topics in memory: no earlier checkpoint
            # can point into it
            checkpointer.log("tickflow: the embedded broker starts empty each run; earlier "
                             "checkpoints of this job are dropped, starting from empty state")
            checkpointer.store.reset()
        pipeline = Pipeline(self.job, max(1, self.workers))
        # the same tick-quality policy as every other mode (engine/runtime/quality.py)
        quality = QualityStage(self.job.spec.quality, self.job.sources[0].label, self.job.key,
                               streaming=True)
        state = PipelineState(pipeline, {self.job.sources[0].label: quality})
        sinks = [u.definition.cls(u.config, self.job.context) for u in self.job.sinks]
        per_batch_commit = checkpointer is None and \
            all(isinstance(s, AcknowledgedSink) and s.is_durable_on_flush for s in sinks)
        uncommitted: dict[int, int] = {}
        latencies: list[np.ndarray] = []
        start = time.perf_counter()
        last_commit = time.monotonic()
        closed = False
        try:
            if checkpointer is not None and checkpointer.resume(state, [source], sinks) \
                    is None:
                source.seek(None)  # empty state: read from the start, not the group's offsets
            empty = pa.RecordBatch.from_pylist([], schema=CANONICAL_TICK_SCHEMA)
            schema = pipeline.process(empty).schema
            for s in sinks:
                s.open(schema)
            if checkpointer is not None and checkpointer.resumed_from is None:
                # where this run's state begins: a kill before the next checkpoint resumes here
                checkpointer.positions = [source.position()]
                checkpointer.commit(state, sinks)
            if self.on_open is not None:
                self.on_open(source)
            # the long-lived objects made so far (modules, kernels, state) need no more GC
            # passes; without this each consumed batch's 20K message objects trigger full
            # traversals of them (a third of the decode time)
            gc.freeze()
            source.mark_active()
            while not self._should_end(start):
                consumed = source.poll()
                if consumed is None:
                    if uncommitted and per_batch_commit and \
                            self._outputs_acknowledged(sinks, 0.0) and \
                            source.commit(uncommitted):
                        uncommitted = {}
                        last_commit = time.monotonic()
                    continue
                result = pipeline.process(quality.check(consumed.ticks))
                for s in sinks:
                    s.write(result)
                done_us = time.time_ns() // 1000
                latency = done_us - consumed.sent_us
                latencies.append(latency)
                summary.ticks += consumed.ticks.num_rows
                summary.messages += consumed.message_count
                for k, v in consumed.flagged.items():
                    summary.flagged[k] = summary.flagged.get(k, 0) + v
                uncommitted.update(consumed.offsets)
                if checkpointer is not None:
                    if checkpointer.advance(consumed.ticks.num_rows, source.position()):
                        checkpointer.commit(state, sinks)
                        if source.commit(uncommitted):  # the group's offsets: for monitoring
                            uncommitted = {}
                elif per_batch_commit and self._outputs_acknowledged(sinks, last_commit) and \
                        source.commit(uncommitted):
                    uncommitted = {}
                    last_commit = time.monotonic()
                lag = source.lag()
                self.view.update(result, latency, lag)
                if recorder is not None:
                    recorder.update(result, latency, lag)
            summary.seconds = time.perf_counter() - start
            if checkpointer is not None:
                # a stream does not end: the last checkpoint is resumed by the next run
                checkpointer.commit(state, sinks)
            for s in sinks:
                text = s.close()
                if text:
                    summary.sink_summaries.append(text)
            closed = True
            if uncommitted:  # the outputs are complete only now
                source.commit(uncommitted)
        finally:
            if not closed:
                for s in sinks:
                    if isinstance(s, AbortableSink):
                        s.abort()
            self.view.close()
            pipeline.close()
            if source.dead_letters is not None:
                summary.dead_letters = dict(source.dead_letters.counts)
            source.close()
        summary.signal_counts = dict(pipeline.signal_counts)
        summary.quality_counts = quality.summary()
        summary.latency_us = np.concatenate(latencies) if latencies else summary.latency_us
        if recorder is not None and self.job.spec.live_report is not None:
            from tickflow.connectors.live_html import write_live_report

            write_live_report(self.job.spec.live_report.path, recorder.data(summary))
        return summary

    def _outputs_acknowledged(self, sinks: list[Any], last_commit: float) -> bool:
        """Whether everything written so far is acknowledged, so offsets may be committed.

        Sinks are not flushed per batch (a flush waits a broker round trip, and on two
        shared cores much longer): offsets go out when the sinks' queues are empty, and at
        least every ``commit_interval_s``, by a blocking flush then.
        """
        if all(s.in_flight() == 0 for s in sinks if isinstance(s, AcknowledgedSink)):
            return True
        if time.monotonic() - last_commit < self.commit_interval_s:
            return False
        for s in sinks:
            if isinstance(s, AcknowledgedSink):
                s.flush()
        return True

    def _should_end(self, start: float) -> bool:
        if self.stop.is_set():
            return True
        if self.max_seconds is not None and time.perf_counter() - start >= self.max_seconds:
            return True
        if self.expected_messages is not None and \
                self.source.message_count >= self.expected_messages:
            return True
        return bool(self.source.is_idle_end())


def run_live(job: CompiledJob, **kwargs: Any) -> LiveSummary:
    """Run a live/export job (see ``LiveRunner``); returns its totals."""
    return LiveRunner(job, **kwargs).run()


def replay_then_end(runner: LiveRunner, path: str, speed: str, follow: bool,
                    partitions: int | None = None) -> Callable[[Any], None]:
    """An ``on_open`` hook: replay ``path`` into the source's topic on a thread; unless
    ``follow``, the run ends once every replayed message has been consumed."""
    from tickflow.connectors.replay import replay_to_kafka

    def start(source: Any) -> None:
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                n = replay_to_kafka(path, source.bootstrap, source.config.topic, speed,
                                    partitions=partitions or source.config.create_partitions,
                                    stop=runner.stop)
                runner.summary.replayed = n
                if not follow:
                    runner.expected_messages = n
            except TickflowError as exc:
                errors.append(exc)
                runner.view.say(f"replay failed: {exc}")
                runner.stop.set()
            except Exception as exc:
                errors.append(exc)
                runner.view.say(f"replay failed: {type(exc).__name__}: {exc}")
                runner.stop.set()

        runner.errors = errors
        threading.Thread(target=produce, name="tickflow-replay", daemon=True).start()

    return start


def run_live_from_cli(job: CompiledJob, args: Any, workers: int, console: Any) -> int:
    """``run-job`` for live and export jobs: signals as they fire, totals at the end.

    SIGTERM and Ctrl+C finish the batch in hand, close the sinks and commit, then exit.
    """
    import signal
    import sys

    quiet = bool(getattr(args, "quiet", False))
    view = LiveView(list(job.signals), job.key, quiet=quiet)
    stop = threading.Event()
    runner = LiveRunner(job, workers=workers, view=view, stop=stop,
                        max_seconds=getattr(args, "max_seconds", None),
                        reset_state=bool(getattr(args, "reset_state", False)))
    if getattr(args, "replay", None):
        runner.on_open = replay_then_end(runner, args.replay, args.speed, args.follow)
        if not quiet:
            view.say(f"replaying {args.replay} at speed {args.speed}"
                     + (" (following afterwards)" if args.follow else ""))

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl+C: leave now
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = runner.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if runner.errors:
        raise runner.errors[0]
    if not quiet:
        for line in summary.lines():
            console.print(line, markup=False)
    else:
        sys.stdout.flush()
    return 0
