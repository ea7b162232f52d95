"""What a live run adds to the driver, as its hooks: the feed, the commit policy, the observer.

- ``live_feed.LiveFeed`` (its own module) polls several streaming sources, each on its own
  thread, in arrival order.
- ``InlineFeed`` polls one streaming source on the driver's own thread (no hand-off between
  threads on the tick-to-signal path) and hands each batch over as soon as it has arrived; it
  ends the run on ``stop``, ``max_seconds``, ``expected_messages`` or the source's idle end.
- ``CommitPolicy`` decides when consumed offsets may be committed: once the outputs holding
  them are durable. For acknowledged sinks (Kafka) that is when the observer has seen their
  batch written and the sink reports every message of it acknowledged (delivery marks: the
  driver's thread never waits for a flush); commits are rate-limited and, while running,
  asynchronous, so no broker round trip is on the per-batch path. Any other sink is durable only at
  a checkpoint or once closed (the driver's ``on_durable``).
- ``LiveObserver`` is the last sink of the main stream, written by the loop right after the
  sinks whose write only enqueues (Kafka): it measures tick-to-signal latency and feeds the
  live view (counts only; the view redraws from its own thread) and the live_report recorder.
  File sinks (Parquet) stay on the driver's writer thread, off the tick-to-signal path.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.engine.contract import AcknowledgedSink
from tickflow.engine.latency import LatencyHistogram


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the batch in hand finishes, the sinks close cleanly); a
    second one leaves at once. The previous handlers come back afterwards."""

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl+C: leave now
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class CommitPolicy:
    """Consumed offsets, batch by batch, committed once the outputs holding them are durable.

    Every ``interval_s`` (or when idle) the batches written so far become a candidate, with
    each acknowledged sink's delivery mark at that moment; a candidate's offsets are committed
    once every sink has acknowledged its deliveries up to that mark. Nothing here waits, for
    the sinks or the broker: later batches keep flowing while earlier ones are acknowledged,
    and running commits are asynchronous (the last one, ``durable()``, is not).

    Args:
        source: the streaming source whose offsets these are.
        sinks: the job's real sinks.
        per_batch: whether offsets may go out while running (every sink is durable once
            acknowledged and there is no checkpointer); otherwise only ``durable()`` commits.
        interval_s: the least time between two commits while running.
    """

    MAX_CANDIDATES = 8  # past this, the newest one is moved on instead of another added

    def __init__(self, source: Any, sinks: list[Any], per_batch: bool,
                 interval_s: float = 0.2):
        self.source = source
        self.acked = [s for s in sinks if isinstance(s, AcknowledgedSink)]
        self.per_batch = per_batch
        self.interval_s = interval_s
        self.pending: collections.deque[tuple[int, dict[int, int]]] = collections.deque()
        # (seq, send times, lag) of each batch given to the writer and not yet written
        self.unwritten: collections.deque[tuple[int, np.ndarray, int]] = collections.deque()
        # (last batch written, each acked sink's delivery mark then), oldest first
        self.candidates: collections.deque[tuple[int, list[int]]] = collections.deque()
        self.processed = -1  # the last batch the graph has been given
        self.boundary = -1  # the last batch of the latest deferred checkpoint
        self.last_commit = time.monotonic()

    def consumed(self, seq: int, offsets: dict[int, int]) -> None:
        pending = self.pending
        if not self.per_batch and len(pending) > 1 and pending[-1][0] <= self.processed \
                and pending[-2][0] > self.boundary:
            # only durable() or checkpointed() take these, all processed ones (up to a
            # checkpoint's boundary) at once: one entry holds them (without this, a run with
            # no checkpoints kept one entry a batch until its end)
            last_seq, last = pending.pop()
            pending[-1] = (last_seq, {**pending[-1][1], **last})
        pending.append((seq, offsets))

    def checkpoint_mark(self) -> int:
        """The driver's ``checkpoint_token``: a deferred checkpoint begins after the batches
        processed so far; their offsets are kept apart from later ones'."""
        self.boundary = self.processed
        return self.processed

    def checkpointed(self, upto: int) -> None:
        """The driver's ``on_checkpointed``: the checkpoint that covers batches up to
        ``upto`` is written (its outputs acknowledged), so their offsets go out, without
        waiting for the broker's answer (a failed one goes out with the next)."""
        offsets = self._take(upto)
        if offsets:
            commit = getattr(self.source, "commit_async", self.source.commit)
            commit(offsets)

    def _written_up_to(self) -> int:
        try:
            return self.unwritten[0][0] - 1
        except IndexError:  # nothing waits in the writer: all processed batches are written
            return self.processed

    def _take(self, upto: int) -> dict[int, int]:
        offsets: dict[int, int] = {}
        while self.pending and self.pending[0][0] <= upto:
            offsets.update(self.pending.popleft()[1])
        return offsets

    def maybe_commit(self, idle: bool = False) -> None:
        """Between batches: commit what is written and acknowledged, at most every interval."""
        if not self.per_batch or not self.pending:
            return
        if not idle and time.monotonic() - self.last_commit < self.interval_s:
            return
        candidates = self.candidates
        upto = self._written_up_to()
        if upto >= self.pending[0][0] and (not candidates or candidates[-1][0] < upto):
            marks = [_delivery_mark(s) for s in self.acked]
            if len(candidates) < self.MAX_CANDIDATES:
                candidates.append((upto, marks))
            else:
                candidates[-1] = (upto, marks)
        if not candidates:
            return
        acknowledged = [_acknowledged_mark(s) for s in self.acked]
        ready = -1
        while candidates and all(a >= m for a, m in zip(acknowledged, candidates[0][1],
                                                              strict=True)):
            ready = candidates.popleft()[0]
        if ready < 0:
            return
        offsets = self._take(ready)
        self.last_commit = time.monotonic()
        if offsets:  # a failed one is kept by the source and goes out with the next
            commit = getattr(self.source, "commit_async", self.source.commit)
            commit(offsets)  # while running: the broker's answer is not waited for

    def durable(self) -> None:
        """The driver's ``on_durable``: everything processed so far is durable."""
        offsets = self._take(self.processed)
        if offsets:
            self.source.commit(offsets)
        self.last_commit = time.monotonic()


def _delivery_mark(sink: Any) -> int:
    """The sink's latest write (a sink that does not count them: 0, acknowledged when empty)."""
    mark = getattr(sink, "delivery_mark", None)
    return mark() if mark is not None else 0


def _acknowledged_mark(sink: Any) -> int:
    """The sink's latest write acknowledged with every earlier one (never blocks)."""
    mark = getattr(sink, "acknowledged_mark", None)
    if mark is not None:
        return int(mark())
    return -1 if sink.in_flight() else 0


class InlineFeed:
    """One streaming source polled on the driver's thread; yields ``(name, (batch, position))``.

    Args:
        name: the source's stream name.
        source: the opened streaming source.
        stop: ends the feed when set (and is set when the feed ends by itself).
        policy: where consumed offsets go.
        max_seconds: ends the feed after this long.
        totals: counts ``ticks`` and ``messages`` as batches come (a
            ``LiveSummary``, watched by tests and benchmarks while the run goes on).
        on_start: called once, on the first pull (after the driver resumed and attached its
            outputs), e.g. to start a replay into the source's broker.
    """

    def __init__(self, name: str, source: Any, stop: threading.Event, policy: CommitPolicy,
                 totals: Any, max_seconds: float | None = None,
                 on_start: Callable[[], None] | None = None):
        self.name = name
        self.source = source
        self.stop = stop
        self.policy = policy
        self.max_seconds = max_seconds
        self.on_start = on_start
        self.expected_messages: int | None = None
        self.totals = totals
        self.single = False  # set by the runner: outputs map one to one on batches
        self.on_idle: Callable[[], None] | None = None  # when a poll brought nothing
        self.lag = 0
        self.seq = -1
        self._consumed: Any = None

    def _should_end(self, start: float) -> bool:
        if self.stop.is_set():
            return True
        if self.max_seconds is not None and time.perf_counter() - start >= self.max_seconds:
            return True
        return self.expected_messages is not None and \
            self.source.message_count >= self.expected_messages

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        if self.on_start is not None:
            self.on_start()
        # the long-lived objects made so far (modules, kernels, state) need no more GC passes;
        # without this each batch's thousands of message objects trigger full traversals
        gc.freeze()
        source, policy = self.source, self.policy
        source.mark_active()
        start = time.perf_counter()
        while not self._should_end(start):
            policy.maybe_commit()
            consumed = source.poll()
            if consumed is None:  # idle only when nothing came: a slow batch is not idleness
                if source.is_idle_end():
                    break
                policy.maybe_commit(idle=True)
                if self.on_idle is not None:
                    self.on_idle()
                continue
            self.seq += 1
            policy.consumed(self.seq, consumed.offsets)
            self._consumed = consumed
            self.lag = source.lag()
            if self.single:  # before the writer can see its output
                policy.unwritten.append((self.seq, consumed.sent_us, self.lag))
            yield self.name, (consumed.ticks, source.position())
        self.stop.set()
        yield self.name, None

    def processed(self, rows: int) -> None:
        """The driver's ``progress`` hook: the batch just yielded is through the graph."""
        policy, consumed, totals = self.policy, self._consumed, self.totals
        totals.ticks += consumed.ticks.num_rows  # counted once processed, as before
        totals.messages += consumed.message_count
        if self.single and not rows:  # every row dropped: no output comes for this batch
            policy.unwritten.pop()
        policy.processed = self.seq


class LiveObserver:
    """The main stream's last sink: latency, the live view and the live_report recorder.

    Args:
        feed: the feed whose batches these outputs are.
        view: the live view (``update(result, latency_us, lag)``).
        recorder: the live_report recorder, or None.
        single: outputs map one to one on the feed's batches (a graph of one stream), so each
            has its ticks' send times; a graph's outputs are shown with the latest lag only.
    """

    def __init__(self, feed: InlineFeed, view: Any, recorder: Any, single: bool):
        self.feed = feed
        self.view = view
        self.recorder = recorder
        self.single = single
        self.latency = LatencyHistogram()  # bounded: a live run lasts days

    def open(self, schema: pa.Schema) -> None:
        pass

    def write(self, batch: pa.RecordBatch) -> None:
        latency: np.ndarray | None = None
        unwritten = self.feed.policy.unwritten
        if self.single and batch.num_rows and unwritten:
            _, sent_us, lag = unwritten[0]
            latency = time.time_ns() // 1000 - sent_us
            self.latency.add(latency)
            unwritten.popleft()  # written by the sinks before this one: commit may follow
        else:
            lag = self.feed.lag
        self.view.update(batch, latency, lag)
        if self.recorder is not None:
            self.recorder.update(batch, latency, lag)

    def close(self) -> str | None:
        return None
