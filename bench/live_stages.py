"""Where a live job's time goes, stage by stage, measured inside the job's own process.

``with StageClock() as clock: run the job`` times the calls that make up a batch's trip
(consume, decode, quality stage, kernels, rules, assembling the output batch, the Kafka sink's
produce, the latency observer and view, offset commits) by wrapping them for the duration of
the run; nothing in tickflow changes. ``clock.table(ticks, seconds)`` says how much of the job's
time each took, per tick and per batch, in wall time and in the calling thread's CPU time (on a
loaded machine a stage's wall time also counts the time other processes had the core). Lanes
run on the calling thread with ``workers: 1`` (the benchmark's job), so the stages add up.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

# a stage called outside any other is this one instead: the sink's flush when the job closes,
# after the run's seconds (the summary stops its clock first)
ALONE = {"sink_flush": "close_flush"}
LABELS = {
    "poll": "consume (librdkafka fetch; waits up to linger_ms when nothing has arrived)",
    "decode": "decode messages to ticks",
    "quality": "quality stage",
    "kernels": "kernels",
    "rules": "signal rules",
    "process": "key ids, output batch assembly",
    "produce": "Kafka sink: signal rows to messages, produce",
    "observe": "latency observer and view",
    "commit": "offset commits: deciding what is durable",
    "commit_call": "offset commits: the broker call (asynchronous while running)",
    "sink_flush": "offset commits: waiting for the sink's acknowledgements (flush)",
}


def stage_methods() -> list[tuple[Any, str, str]]:
    """``(owner, attribute, stage)`` of the live path's stages that are timed as plain calls
    (bench/live_timeline.py times these too, beside the ones it wraps its own way)."""
    import tickflow.connectors.kafka_source as kafka_source
    from tickflow.connectors.kafka_sink import KafkaSink
    from tickflow.engine.executors.live_hooks import CommitPolicy
    from tickflow.engine.rules import Rule
    from tickflow.engine.runtime.pipeline import Lane, Pipeline
    from tickflow.engine.runtime.quality import QualityStage

    source = kafka_source.KafkaSource
    return [(kafka_source, "decode_messages", "decode"), (QualityStage, "check", "quality"),
            (Pipeline, "process", "process"), (Lane, "run", "kernels"), (Rule, "mask", "rules"),
            (KafkaSink, "write", "produce"), (CommitPolicy, "maybe_commit", "commit"),
            (source, "commit", "commit_call"), (source, "commit_async", "commit_call"),
            (KafkaSink, "flush", "sink_flush")]


class StageClock:
    """Accumulated seconds and calls per stage while active."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.nested: dict[str, float] = defaultdict(float)  # time of stages called inside
        # the calling thread's CPU seconds: what a stage costs, whatever else runs meanwhile
        self.cpu: dict[str, float] = defaultdict(float)
        self.nested_cpu: dict[str, float] = defaultdict(float)
        self._active = threading.local()  # the stages running in this thread, outermost first
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        seconds, calls, nested, active = self.seconds, self.calls, self.nested, self._active
        cpu, nested_cpu = self.cpu, self.nested_cpu

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = active.__dict__.setdefault("stack", [])
            name = stage if stack else ALONE.get(stage, stage)
            stack.append(name)
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                took_cpu = time.thread_time() - start_cpu
                stack.pop()
                seconds[name] += took
                cpu[name] += took_cpu
                calls[name] += 1
                if stack:
                    nested[stack[-1]] += took
                    nested_cpu[stack[-1]] += took_cpu

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def __enter__(self) -> StageClock:
        import tickflow.connectors.kafka_source as kafka_source
        from tickflow.engine.executors.live_hooks import LiveObserver

        self._wrap(kafka_source.KafkaSource, "poll", "poll")
        self._wrap(LiveObserver, "write", "observe")
        for owner, attr, stage in stage_methods():
            self._wrap(owner, attr, stage)
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def exclusive(self) -> dict[str, float]:
        """Seconds per stage, without the stages timed inside it (counted when they were
        called inside it: the sink's last flush at the end is not inside a commit)."""
        return {stage: s - self.nested.get(stage, 0.0) for stage, s in self.seconds.items()}

    def exclusive_cpu(self) -> dict[str, float]:
        """As ``exclusive``, in the calling thread's CPU seconds."""
        return {stage: s - self.nested_cpu.get(stage, 0.0) for stage, s in self.cpu.items()}

    def table(self, ticks: int, seconds: float) -> list[str]:
        """A Markdown table: each stage's share of the run, µs per tick and ms per batch."""
        batches = max(1, self.calls.get("decode", 0))
        rows = ["| stage | seconds | share of the run | µs per tick | CPU µs per tick "
                "| ms per batch |", "|---|---:|---:|---:|---:|---:|"]
        own, own_cpu = self.exclusive(), self.exclusive_cpu()
        per_tick = 1e6 / max(ticks, 1)
        for stage in LABELS:
            s = own.get(stage, 0.0)
            rows.append(f"| {LABELS[stage]} | {s:.2f} | {100 * s / max(seconds, 1e-9):.1f}% | "
                        f"{per_tick * s:.2f} | {per_tick * own_cpu.get(stage, 0.0):.2f} | "
                        f"{1e3 * s / batches:.2f} |")
        rest = seconds - sum(s for stage, s in own.items() if stage in LABELS)
        rows.append(f"| the rest (driver loop, threads, GC) | {rest:.2f} | "
                    f"{100 * rest / max(seconds, 1e-9):.1f}% | {per_tick * rest:.2f} | | "
                    f"{1e3 * rest / batches:.2f} |")
        staged_cpu = sum(s for stage, s in own_cpu.items() if stage in LABELS)
        rows.append(f"| {ticks:,} ticks in {batches:,} batches | {seconds:.2f} | 100% | "
                    f"{per_tick * seconds:.2f} | {per_tick * staged_cpu:.2f} (the stages) | "
                    f"{1e3 * seconds / batches:.2f} |")
        if own.get("close_flush"):
            rows.append(f"| and after the run: the sink's flush when the job closes | "
                        f"{own['close_flush']:.2f} | | | | |")
        return rows
