"""``run-job`` for a live graph of several streaming sources (arbitrage, multi-timeframe).

The placement is ``LiveRunner``'s (executors/live.py) and its feed is ``live_feed.LiveFeed``:
each source polled on its own thread, batches handed over in arrival order. Without an on-disk
state backend the consumer offsets are committed after the sinks closed (a Parquet file is
complete only then); with one, after each checkpoint. The run ends on ``stop`` (SIGTERM,
Ctrl+C: the batch in hand is finished and the sinks close cleanly, so what was written is kept
and no temporary file is left), after ``max_seconds``, or when every source has been idle for
its ``end_when_idle_s``.
"""

from __future__ import annotations

import threading
from typing import Any

from tickflow.engine.runtime.pipeline import RunSummary


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
    from tickflow.engine.executors.live_hooks import stop_on_signals
    stop = threading.Event()
    with stop_on_signals(stop):
        summary = run_live_graph(job, workers=workers, stop=stop,
                                 max_seconds=getattr(args, "max_seconds", None),
                                 reset_state=bool(getattr(args, "reset_state", False)))
    if not getattr(args, "quiet", False):
        console.print(f"processed {summary.rows:,} rows in {summary.seconds:.2f} s",
                      markup=False)
        if summary.quality_counts:
            console.print("tick quality: " + ", ".join(
                f"{k}={v:,}" for k, v in sorted(summary.quality_counts.items())), markup=False)
        for line in summary.sink_summaries:
            console.print(line, markup=False)
    return 0
