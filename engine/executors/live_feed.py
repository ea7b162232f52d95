"""A live job of several streaming sources: each polled on a thread of its own, the batches
fed to the driver in arrival order (one source is polled on the driver's thread instead:
``live_hooks.InlineFeed``). The offsets of the batches before a deferred checkpoint are kept
apart until it is written, then committed without waiting for the broker."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_END = object()


class LiveFeed:
    """Polls streaming sources on threads; yields ``(name, (batch, position))`` as they come.

    Args:
        sources: source name -> opened streaming source.
        stop: ends the feed when set.
        max_seconds: ends the feed after this long.
        on_start: called once on the driver's thread before the sources are polled (as
            ``InlineFeed``'s: the outputs opened, the empty-state checkpoint, ``on_open``).
    """

    def __init__(self, sources: dict[str, Any], stop: threading.Event,
                 max_seconds: float | None = None,
                 on_start: Callable[[], None] | None = None):
        self.sources = sources
        self.stop = stop
        self.max_seconds = max_seconds
        self.on_start = on_start
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=4 * max(1, len(sources)))
        self.pending: dict[str, dict[int, int]] = {n: {} for n in sources}
        # deferred checkpoints begun and not written yet: (mark, each source's offsets then)
        self.marked: collections.deque[tuple[int, dict[str, dict[int, int]]]] = \
            collections.deque()
        self._marks = 0
        self.on_idle: Callable[[], None] | None = None  # when no batch came for a while
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
        if self.on_start is not None:  # as InlineFeed's, before any source is polled
            self.on_start()
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
                if self.on_idle is not None:  # a checkpoint due or acknowledged meanwhile
                    self.on_idle()
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

    def checkpoint_mark(self) -> int:
        """The driver's ``checkpoint_token``: a deferred checkpoint begins after every batch
        yielded so far (the driver has processed each before it begins one); their offsets
        wait apart from later ones' until it is written (``checkpointed``)."""
        self._marks += 1
        self.marked.append((self._marks, self.pending))
        self.pending = {n: {} for n in self.sources}
        return self._marks

    def checkpointed(self, upto: int) -> None:
        """The driver's ``on_checkpointed``: the checkpoint begun at mark ``upto`` is written,
        so the offsets of the batches it covers go out, without waiting for the broker's
        answer (a failed one goes out with the next commit)."""
        for name, offsets in self._take(upto).items():
            source = self.sources[name]
            getattr(source, "commit_async", source.commit)(offsets)

    def _take(self, upto: int) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        while self.marked and self.marked[0][0] <= upto:
            for name, offsets in self.marked.popleft()[1].items():
                if offsets:
                    out.setdefault(name, {}).update(offsets)
        return out

    def commit(self) -> None:
        """The driver's ``on_durable``: commit every offset the graph has consumed, waiting
        for the broker (a checkpoint written at once, the sinks closed: all is durable)."""
        taken = self._take(self._marks)
        for name, offsets in self.pending.items():
            if offsets:
                taken.setdefault(name, {}).update(offsets)
        self.pending = {n: {} for n in self.sources}
        for name, offsets in taken.items():
            if not self.sources[name].commit(offsets):
                self.pending[name] = {**offsets, **self.pending[name]}  # goes with the next
