"""Several streaming sources for the driver: each polled on its own thread, batches handed
over in arrival order, offsets committed once the output is durable.

Each source's poller asks the source for its position right after each poll, so a checkpoint
records, for every source, the point just after the last batch the graph has seen. Without an
on-disk state backend the consumer offsets are committed after the sinks closed (a Parquet file
is complete only then); with one, after each checkpoint. The run ends on ``stop`` (SIGTERM,
Ctrl+C: the batch in hand is finished and the sinks close cleanly, so what was written is kept
and no temporary file is left), after ``max_seconds``, or when every source has been idle for
its ``end_when_idle_s``. ``LiveRunner`` (executors/live.py) places the driver with this feed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from tickflow.engine.runtime.pipeline import RunSummary

_END = object()


class LiveFeed:
    """Polls streaming sources on threads; yields ``(name, (batch, position))`` as they come.

    Args:
        sources: source name -> opened streaming source.
        stop: ends the feed when set.
        max_seconds: ends the feed after this long.
    """

    def __init__(self, sources: dict[str, Any], stop: threading.Event,
                 max_seconds: float | None = None):
        self.sources = sources
        self.stop = stop
        self.max_seconds = max_seconds
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=4 * max(1, len(sources)))
        self.pending: dict[str, dict[int, int]] = {n: {} for n in sources}
        self.errors: list[BaseException] = []
        self.ticks = 0
        self.messages = 0

    def _poll(self, name: str, source: Any) -> None:
        try:
            while not self.stop.is_set():
                consumed = source.poll()
                if consumed is None:
                    if source.is_idle_end():
                        break
                    continue
                item = (name, consumed, source.position())
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # raised on the driver's thread
            self.errors.append(exc)
        finally:
            self.queue.put((name, _END, None))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        threads = [threading.Thread(target=self._poll, args=(n, s), daemon=True,
                                    name=f"tickflow-poll-{n}")
                   for n, s in self.sources.items()]
        for t in threads:
            t.start()
        start = time.monotonic()
        open_sources = set(self.sources)
        while open_sources:
            if self.max_seconds is not None and time.monotonic() - start >= self.max_seconds:
                self.stop.set()
            try:
                name, consumed, position = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() and not any(t.is_alive() for t in threads):
                    break
                continue
            if self.errors:
                raise self.errors[0]
            if consumed is _END:
                open_sources.discard(name)
                yield name, None
                continue
            self.pending[name].update(consumed.offsets)
            self.ticks += consumed.ticks.num_rows
            self.messages += consumed.message_count
            yield name, (consumed.ticks, position)
        self.stop.set()
        for t in threads:
            t.join(timeout=5)

    def commit(self) -> None:
        """Commit every offset the graph has consumed (the output holding it is durable)."""
        for name, offsets in self.pending.items():
            if offsets and self.sources[name].commit(offsets):
                self.pending[name] = {}


def run_live_graph(job: Any, *, workers: int = 1, stop: threading.Event | None = None,
                   max_seconds: float | None = None, reset_state: bool = False) -> RunSummary:
    """Run a job whose sources are all streaming (Kafka) until it is stopped or idle.

    The same placement as every live job (``LiveRunner``); the totals as a ``RunSummary``.
    """
    from tickflow.engine.executors.live import LiveRunner

    job.context.extra["streaming"] = True  # sinks show rows as they come (console)
    live = LiveRunner(job, workers=workers, stop=stop, max_seconds=max_seconds,
                      reset_state=reset_state).run()
    return RunSummary(rows=live.ticks, seconds=live.seconds,
                      signal_counts=dict(live.signal_counts),
                      sink_summaries=list(live.sink_summaries),
                      quality_counts=dict(live.quality_counts))


def run_live_graph_from_cli(job: Any, args: Any, workers: int, console: Any) -> int:
    """``run-job`` for a streaming graph: rows as they come; Ctrl+C/SIGTERM end it cleanly."""
    import signal

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl+C: leave now
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run_live_graph(job, workers=workers, stop=stop,
                                 max_seconds=getattr(args, "max_seconds", None),
                                 reset_state=bool(getattr(args, "reset_state", False)))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not getattr(args, "quiet", False):
        console.print(f"processed {summary.rows:,} rows in {summary.seconds:.2f} s",
                      markup=False)
        if summary.quality_counts:
            console.print("tick quality: " + ", ".join(
                f"{k}={v:,}" for k, v in sorted(summary.quality_counts.items())), markup=False)
        for line in summary.sink_summaries:
            console.print(line, markup=False)
    return 0
