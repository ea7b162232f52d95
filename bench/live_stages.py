"""Where a live job's time goes, stage by stage, measured inside the job's own process.

``with StageClock() as clock: run the job`` times the calls that make up a batch's trip
(consume, decode, quality stage, kernels, rules, assembling the output batch, the Kafka sink's
produce, the latency observer and view, offset commits) by wrapping them for the duration of
the run; nothing in tickflow changes. ``clock.table(ticks, seconds)`` says how much of the job's
time each took, per tick and per batch. Lanes run on the calling thread with ``workers: 1``
(the benchmark's job), so the stages add up.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

# stage -> the stages timed inside it (reported exclusive of them)
INSIDE = {"poll": ("decode",), "process": ("kernels", "rules"),
          "commit": ("commit_call", "sink_flush")}
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


class StageClock:
    """Accumulated seconds and calls per stage while active."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
                calls[stage] += 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def __enter__(self) -> StageClock:
        import tickflow.connectors.kafka_source as kafka_source
        from tickflow.connectors.kafka_sink import KafkaSink
        from tickflow.engine.executors.live_hooks import CommitPolicy, LiveObserver
        from tickflow.engine.rules import Rule
        from tickflow.engine.runtime.pipeline import Lane, Pipeline
        from tickflow.engine.runtime.quality import QualityStage

        self._wrap(kafka_source.KafkaSource, "poll", "poll")
        self._wrap(kafka_source, "decode_messages", "decode")
        self._wrap(QualityStage, "check", "quality")
        self._wrap(Pipeline, "process", "process")
        self._wrap(Lane, "run", "kernels")
        self._wrap(Rule, "mask", "rules")
        self._wrap(KafkaSink, "write", "produce")
        self._wrap(LiveObserver, "write", "observe")
        self._wrap(CommitPolicy, "maybe_commit", "commit")
        self._wrap(kafka_source.KafkaSource, "commit", "commit_call")
        if hasattr(kafka_source.KafkaSource, "commit_async"):
            self._wrap(kafka_source.KafkaSource, "commit_async", "commit_call")
        self._wrap(KafkaSink, "flush", "sink_flush")
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def exclusive(self) -> dict[str, float]:
        """Seconds per stage, without the stages timed inside it."""
        out = dict(self.seconds)
        for outer, inner in INSIDE.items():
            if outer in out:
                out[outer] -= sum(self.seconds.get(i, 0.0) for i in inner)
        return out

    def table(self, ticks: int, seconds: float) -> list[str]:
        """A Markdown table: each stage's share of the run, µs per tick and ms per batch."""
        batches = max(1, self.calls.get("decode", 0))
        rows = ["| stage | seconds | share of the run | µs per tick | ms per batch |",
                "|---|---:|---:|---:|---:|"]
        own = self.exclusive()
        for stage in LABELS:
            s = own.get(stage, 0.0)
            rows.append(f"| {LABELS[stage]} | {s:.2f} | {100 * s / max(seconds, 1e-9):.1f}% | "
                        f"{1e6 * s / max(ticks, 1):.2f} | {1e3 * s / batches:.2f} |")
        rest = seconds - sum(own.values())
        rows.append(f"| the rest (driver loop, threads, GC) | {rest:.2f} | "
                    f"{100 * rest / max(seconds, 1e-9):.1f}% | {1e6 * rest / max(ticks, 1):.2f} | "
                    f"{1e3 * rest / batches:.2f} |")
        rows.append(f"| {ticks:,} ticks in {batches:,} batches | {seconds:.2f} | 100% | "
                    f"{1e6 * seconds / max(ticks, 1):.2f} | {1e3 * seconds / batches:.2f} |")
        return rows
