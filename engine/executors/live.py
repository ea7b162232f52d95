"""Live and export jobs: the one driver placed in a Kafka-consuming process.

The features come from the same driver and pipelines as research runs (keyed state carried
from batch to batch), so a live run and a research run over the same ticks give the same
columns. What makes a kill or a broker outage lose nothing and repeat nothing is the driver's
commit hook (``live_hooks.CommitPolicy``): outputs are written first, offsets committed only
once the sinks holding them are durable. Sinks that are durable once acknowledged (Kafka) get
commits a few times a second for every batch whose messages they have acknowledged (never a
flush on the driver's thread); with any other sink
(Parquet, whose file is complete only when closed) offsets are committed at each checkpoint and
once the sinks are closed.

With an on-disk state backend (``--state-backend rocksdb|tiledb``) the driver checkpoints like
a research run (engine/state/recovery.py); a restart resumes from the newest good checkpoint.
A checkpoint due while running takes the state at once and is written (on a thread of its
own), then its offsets committed, once the Kafka sinks have acknowledged its outputs (checked
between batches and when idle): the driver's thread waits for neither the broker nor the disk.
A run from empty state checkpoints once before it reads, so a kill at any moment resumes
somewhere. The last checkpoint is never *final*: a stream has no end, the next run goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tickflow.engine.compile import CompiledJob
from tickflow.engine.contract import (
    AcknowledgedSink,
    GroupMemberSource,
    StatusReporter,
    StreamingSource,
)
from tickflow.engine.errors import SourceError, TickflowError
from tickflow.engine.executors.live_feed import LiveFeed
from tickflow.engine.executors.live_hooks import CommitPolicy, InlineFeed, LiveObserver
from tickflow.engine.latency import LatencyHistogram
from tickflow.engine.live_view import LiveView
from tickflow.engine.runtime.driver import Driver


@dataclass
class LiveSummary:
    """Totals of a live run (printed at its end, returned to tests and benchmarks)."""

    ticks: int = 0
    messages: int = 0
    seconds: float = 0.0
    signal_counts: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    quality_counts: dict[str, int] = field(default_factory=dict)  # the driver's quality stage
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    sink_summaries: list[str] = field(default_factory=list)
    replayed: int | None = None

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    def latency_percentiles_ms(self) -> dict[str, float]:
        """p50/p99/p99.9 tick-to-signal latency in ms (empty when nothing was measured)."""
        if self.latency.count == 0:
            return {}
        return {name: self.latency.percentile_us(q) / 1000
                for name, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9))}

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
    """Places the one driver for a live or export job until it is stopped or its input ends.

    One streaming source is polled on the driver's thread (``InlineFeed``); a job of several
    streaming sources has each polled on its own thread (``LiveFeed``). What used to be this
    runner's own loop is the driver's hooks (``live_hooks``): the feed, the commit policy and
    the observer that feeds the view and the live_report recorder.

    Args:
        job: the compiled job; its sources must be streaming ones (``kind: kafka``).
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
        self._status = self.view.say if view is not None else None  # else: stderr
        self.stop = stop or threading.Event()
        self.max_seconds = max_seconds
        self.on_open = on_open
        self._expected: int | None = None
        self.commit_interval_s = 0.2
        self.summary = LiveSummary()
        self.source: Any = None
        self.feed: InlineFeed | None = None
        self.errors: list[BaseException] = []
        self.recorder: Any = None  # the live_report: page's counts, set by run()
        self.checkpoint_log: Callable[[str], None] | None = None  # default: stderr
        self._writer: Any = None  # the checkpoint writer process, while a checkpointed run runs
        # False: checkpoints are written on a thread of this process (a member's partition
        # runners: one shared writer process took their commits one at a time, and the
        # members' drain, which counts committed offsets, fell; docs/performance.md)
        self.checkpoint_process = True

    @property
    def expected_messages(self) -> int | None:
        return self._expected

    @expected_messages.setter
    def expected_messages(self, n: int | None) -> None:
        """End once this many messages were consumed (a replay without ``--follow``)."""
        self._expected = n
        if self.feed is not None:
            self.feed.expected_messages = n

    def _open_sources(self) -> dict[str, Any]:
        sources: dict[str, Any] = {}
        try:
            for use in self.job.sources:
                source = use.definition.cls(use.config, self.job.context)
                if self._status is not None and isinstance(source, StatusReporter):
                    source.status = self._status
                if isinstance(source, GroupMemberSource) and \
                        source.group_member(_refused, _refused) is not None:
                    msg = (f"source {use.label!r} has `group:`: run the job with run-job, "
                           f"one process per member (docs/cluster.md)")
                    raise SourceError(msg)
                if not isinstance(source, StreamingSource):
                    msg = (f"{self.job.spec.mode} mode needs streaming sources (kind: kafka); "
                           f"source {use.label!r} is kind {use.definition.name!r}")
                    raise SourceError(msg)
                sources[use.label] = source
                source.open()
        except BaseException:
            for source in sources.values():
                source.close()
            raise
        first = next(iter(sources.values()))
        self.job.context.extra["kafka_bootstrap"] = first.bootstrap
        self.source = first
        return sources

    def run(self) -> LiveSummary:
        from tickflow.connectors.live_report import LiveReportRecorder
        from tickflow.engine.state.recovery import open_checkpointer

        job, summary = self.job, self.summary
        # the live summary page's counts: None unless the job has a live_report: block
        recorder = self.recorder = LiveReportRecorder.for_job(job)
        checkpointer = open_checkpointer(job, reset=self.reset_state, log=self.checkpoint_log)
        sources = self._open_sources()
        source = self.source
        if checkpointer is not None and any(getattr(s, "broker", None) is not None
                                            for s in sources.values()) \
                and checkpointer.store.list():
            # a broker started by this run keeps its topics in memory: no earlier checkpoint
            # can point into it
            checkpointer.log("tickflow: the embedded broker starts empty each run; earlier "
                             "checkpoints of this job are dropped, starting from empty state")
            checkpointer.store.reset()
        if checkpointer is not None:  # empty state: from the start, not the group's offsets
            checkpointer.on_fresh_start = lambda: [s.seek(None) for s in sources.values()]
        sinks = [(u.definition.cls(_no_linger(u.config), job.context), stream)
                 for u, stream in zip(job.sinks, job.sink_streams, strict=True)]
        real = [s for s, _ in sinks]
        single = len(sources) == 1 and len(job.streams) == 1
        per_batch = checkpointer is None and single and \
            all(isinstance(s, AcknowledgedSink) and s.is_durable_on_flush for s in real)
        policy = CommitPolicy(source, real, per_batch, self.commit_interval_s)
        feed = self.feed = InlineFeed(next(iter(sources)), source, self.stop, policy,
                                      summary, self.max_seconds, on_start=lambda: self._started(
                                          driver, checkpointer, sources))
        feed.single = single
        feed.expected_messages = self._expected
        observer = LiveObserver(feed, self.view, recorder, single)
        summary.latency = observer.latency  # filled as the run goes (a watcher may read it)
        many = LiveFeed(sources, self.stop, self.max_seconds, on_start=feed.on_start) \
            if len(sources) > 1 else None
        durable = policy.durable if many is None else many.commit
        driver = Driver(job, workers=max(1, self.workers),
                        morsel_rows=job.spec.executor.morsel_rows, sources=sources,
                        sinks=[*sinks, (observer, job.main_stream)],
                        checkpointer=checkpointer, stop=self.stop, final_is_end=False,
                        feed=feed if many is None else many, on_durable=durable,
                        progress=feed.processed if many is None else None,
                        inline=lambda s: s is observer or isinstance(s, AcknowledgedSink),
                        # a checkpoint waits for no acknowledgement on this thread
                        checkpoint_token=(policy if many is None else many).checkpoint_mark,
                        on_checkpointed=(policy if many is None else many).checkpointed)
        feed.on_idle = driver.settle_checkpoints
        if many is not None:
            many.on_idle = driver.settle_checkpoints
        if checkpointer is not None and self.checkpoint_process:
            # checkpoints after the first are committed by a process of their own (rocksdict
            # holds the GIL while it writes, which stopped this thread;
            # engine/checkpoint_process.py), started now: its imports overlap the warm-up
            from tickflow.engine.checkpoint_process import CheckpointProcess

            self._writer = CheckpointProcess.shared()
        try:
            result = driver.run()
        finally:
            if self._writer is not None:
                checkpointer.store.writer = None
                self._writer.release()
                self._writer = None
            self.view.close()
            summary.dead_letters = {}
            for s in sources.values():
                if s.dead_letters is not None:
                    for k, v in s.dead_letters.counts.items():
                        summary.dead_letters[k] = summary.dead_letters.get(k, 0) + v
        if many is not None:
            summary.ticks, summary.messages = many.ticks, many.messages
        summary.seconds = result.seconds
        summary.signal_counts = dict(result.signal_counts)
        summary.quality_counts = dict(result.quality_counts)
        summary.sink_summaries = list(result.sink_summaries)
        summary.latency = observer.latency
        if recorder is not None and job.spec.live_report is not None:
            from tickflow.connectors.live_html import write_live_report

            write_live_report(job.spec.live_report.path, recorder.data(summary))
        return summary

    def _started(self, driver: Driver, checkpointer: Any, sources: dict[str, Any]) -> None:
        """On the feed's first pull: the sinks opened and the kernels loaded (not on the
        first tick's path), the empty-state checkpoint, then ``on_open``."""
        driver.open_outputs()
        driver.warm()
        if checkpointer is not None and checkpointer.resumed_from is None:
            # where this run's state begins: a kill before the next checkpoint resumes here
            checkpointer.positions = [s.position() for s in sources.values()]
            checkpointer.commit(driver.state, [s for s, _ in driver.sinks])
        if checkpointer is not None:
            checkpointer.store.writer = self._writer  # the next ones, in the writer process
            # (None: on a thread of this process)
        if self.on_open is not None:
            self.on_open(self.source)


def _refused(partitions: list[int]) -> None:
    return None


def _no_linger(config: Any) -> Any:
    """A live job's producer sends each signal at once: ``linger_ms: 0`` unless the YAML
    sets it (a sink's default batching delay is on the tick-to-signal path; the Kafka sink
    gives librdkafka 0.5 ms at 0, so that a write's signals go in one request)."""
    fields = type(config).model_fields
    if "linger_ms" in fields and "linger_ms" not in config.model_fields_set:
        return config.model_copy(update={"linger_ms": 0})
    return config


def run_live(job: CompiledJob, **kwargs: Any) -> LiveSummary:
    """Run a live/export job (see ``LiveRunner``); returns its totals."""
    return LiveRunner(job, **kwargs).run()


def replay_then_end(runner: LiveRunner, path: str, speed: str, follow: bool,
                    partitions: int | None = None,
                    linger_ms: int = 5) -> Callable[[Any], None]:
    """An ``on_open`` hook: replay ``path`` into the source's topic on a thread; unless
    ``follow``, the run ends once every replayed message has been consumed."""
    from tickflow.engine.executors.live_replay import replay_into

    def start(source: Any) -> None:
        errors: list[BaseException] = []

        def produce() -> None:
            try:  # in the source's format: json, avro or arrow
                n = replay_into(source, path, speed,
                                partitions=partitions or source.config.create_partitions,
                                stop=runner.stop, linger_ms=linger_ms)
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
    import sys

    quiet = bool(getattr(args, "quiet", False))
    view = LiveView(list(job.signals), job.key, quiet=quiet)
    stop = threading.Event()
    runner = LiveRunner(job, workers=workers, view=view, stop=stop,
                        max_seconds=getattr(args, "max_seconds", None),
                        reset_state=bool(getattr(args, "reset_state", False)))
    if getattr(args, "replay", None):
        runner.on_open = replay_then_end(runner, args.replay, args.speed, args.follow,
                                         linger_ms=getattr(args, "replay_linger_ms", 5))
        if not quiet:
            view.say(f"replaying {args.replay} at speed {args.speed}"
                     + (" (following afterwards)" if args.follow else ""))

    from tickflow.engine.executors.live_hooks import stop_on_signals

    with stop_on_signals(stop):
        summary = runner.run()
    if runner.errors:
        raise runner.errors[0]
    if not quiet:
        for line in summary.lines():
            console.print(line, markup=False)
    else:
        sys.stdout.flush()
    return 0
