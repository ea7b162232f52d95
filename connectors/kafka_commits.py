"""A Kafka source's consumed offsets on their way to the broker: pending, sent, committed.

While a live job runs its commits go out asynchronously: the broker's answer comes back through
the consumer's ``on_commit`` callback on a later poll, so the driver's thread never waits for
the round trip (on a loaded machine the embedded broker took several ms to answer). A commit
that fails puts its offsets back to pending, unless newer ones were sent since, so they go out
with the next one. The last commit of a run is synchronous: it returns once the broker has the
offsets. A job with several sources polls each on a thread of its own, where the answers are
served, while its driver's thread commits: the bookkeeping is kept under a lock.
"""

from __future__ import annotations

import threading
from typing import Any


class OffsetCommits:
    """Per partition: offsets to commit, offsets sent and not answered yet, offsets committed.

    Args:
        topic: the topic the offsets are of.
    """

    def __init__(self, topic: str):
        self.topic = topic
        self.pending: dict[int, int] = {}
        self.sent: dict[int, int] = {}  # committed asynchronously, no answer yet
        self.committed: dict[int, int] = {}
        self._lock = threading.Lock()  # on_commit runs on the polling thread

    def forget(self) -> None:
        """A new (empty) broker: nothing pending or on its way belongs to its topic."""
        self.pending.clear()
        self.sent.clear()

    def _partitions(self, offsets: dict[int, int]) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(self.topic, p, o) for p, o in offsets.items()]

    def commit(self, consumer: Any, offsets: dict[int, int]) -> bool:
        """Commit ``offsets`` and everything pending or unanswered, waiting for the broker;
        on failure they stay pending. Returns whether everything is committed."""
        from confluent_kafka import KafkaException

        with self._lock:
            self.pending.update(offsets)
            sending = {**self.sent, **self.pending}
        if not sending:
            return True
        try:
            consumer.commit(offsets=self._partitions(sending), asynchronous=False)
        except KafkaException:
            return False
        with self._lock:
            self.committed.update(sending)
            self.pending.clear()
            self.sent.clear()
        return True

    def commit_async(self, consumer: Any, offsets: dict[int, int]) -> bool:
        """Send ``offsets`` and everything pending without waiting; the answer comes to
        ``on_commit``. Returns False when the request could not even be sent (kept pending)."""
        from confluent_kafka import KafkaException

        with self._lock:
            self.pending.update(offsets)
            if not self.pending:
                return True
            sending = dict(self.pending)
            # marked sent before the request goes: its answer may come before this returns
            self.sent.update(sending)
            self.pending.clear()
        try:
            consumer.commit(offsets=self._partitions(sending), asynchronous=True)
        except KafkaException:
            with self._lock:
                for p, o in sending.items():
                    if self.sent.get(p) == o:
                        del self.sent[p]
                    if self.pending.get(p, -1) < o:
                        self.pending[p] = o
            return False
        return True

    def on_commit(self, err: Any, partitions: list[Any]) -> None:
        """The consumer's ``on_commit`` callback (served on the polling thread)."""
        with self._lock:
            self._answered(err, partitions)

    def _answered(self, err: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            p, o = tp.partition, tp.offset
            if self.sent.get(p) != o:
                # a synchronous commit's answer (handled there), one superseded by a newer
                # send (whose own answer counts), or one from before a new broker
                continue
            del self.sent[p]
            if err is None and tp.error is None:
                self.committed[p] = max(o, self.committed.get(p, -1))
            elif self.pending.get(p, -1) < o:
                self.pending[p] = o  # goes out with the next commit
