"""Failed offset commits on the embedded broker (connectors/kafka_commits.py): a commit the
broker refuses keeps its offsets pending, and they go out with the next commit.

The broker refuses a commit for a topic it does not have (UNKNOWN_TOPIC_OR_PART), so the tests
commit offsets of a topic before creating it: a real refusal, answered through the consumer's
``on_commit`` callback like any other."""

from __future__ import annotations

import time
from typing import Any

from tests.kafka.util import unique
from tickflow.connectors.kafka_client import client_settings, ensure_topic
from tickflow.connectors.kafka_commits import OffsetCommits


def _consumer(bootstrap: str, commits: OffsetCommits, group: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(client_settings(bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "on_commit": commits.on_commit}))


def _answered(consumer: Any, commits: OffsetCommits, timeout_s: float = 30.0) -> None:
    """Serve the consumer's callbacks until every asynchronous commit has been answered."""
    deadline = time.monotonic() + timeout_s
    while commits.sent:
        assert time.monotonic() < deadline, f"commits never answered: {commits.sent}"
        consumer.poll(0.05)


def _on_broker(bootstrap: str, topic: str, group: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(client_settings(bootstrap, **{"group.id": group,
                                               "enable.auto.commit": False}))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}


def test_a_refused_asynchronous_commit_goes_out_with_the_next(kafka_broker) -> None:
    bootstrap = kafka_broker.bootstrap
    topic, group = unique("commit-later"), unique("commit-g")
    commits = OffsetCommits(topic)
    consumer = _consumer(bootstrap, commits, group)
    try:
        assert commits.commit_async(consumer, {0: 5})  # sent; the broker has no such topic
        assert commits.sent == {0: 5} and not commits.pending
        _answered(consumer, commits)
        assert commits.pending == {0: 5} and not commits.committed  # refused: kept
        ensure_topic(client_settings(bootstrap), topic, 2)
        assert commits.commit_async(consumer, {1: 3})  # the next one carries it
        assert commits.sent == {0: 5, 1: 3} and not commits.pending
        _answered(consumer, commits)
        assert commits.committed == {0: 5, 1: 3} and not commits.pending
    finally:
        consumer.close()
    assert _on_broker(bootstrap, topic, group, 2) == {0: 5, 1: 3}


def test_a_refused_answer_superseded_by_a_newer_send_is_not_sent_again(kafka_broker) -> None:
    """Two commits of one partition both refused: only the newer offset is kept (the older
    answer is not put back over it), and it is what the next commit sends."""
    bootstrap = kafka_broker.bootstrap
    topic, group = unique("commit-twice"), unique("commit-g")
    commits = OffsetCommits(topic)
    consumer = _consumer(bootstrap, commits, group)
    try:
        assert commits.commit_async(consumer, {0: 5})
        assert commits.commit_async(consumer, {0: 8})  # before the first is answered
        _answered(consumer, commits)
        assert commits.pending == {0: 8}
        ensure_topic(client_settings(bootstrap), topic, 1)
        assert commits.commit_async(consumer, {})
        _answered(consumer, commits)
        assert commits.committed == {0: 8} and not commits.pending
    finally:
        consumer.close()
    assert _on_broker(bootstrap, topic, group, 1) == {0: 8}


def test_a_refused_synchronous_commit_stays_pending(kafka_broker) -> None:
    """The last commit of a run waits for the broker: refused, it says so and keeps the
    offsets (with any refused asynchronous ones) for the next."""
    bootstrap = kafka_broker.bootstrap
    topic, group = unique("commit-sync"), unique("commit-g")
    commits = OffsetCommits(topic)
    consumer = _consumer(bootstrap, commits, group)
    try:
        assert commits.commit_async(consumer, {1: 2})
        _answered(consumer, commits)
        assert commits.commit(consumer, {0: 5}) is False
        assert commits.pending == {0: 5, 1: 2} and not commits.committed
        ensure_topic(client_settings(bootstrap), topic, 2)
        assert commits.commit(consumer, {0: 7}) is True
        assert commits.committed == {0: 7, 1: 2} and not commits.pending
    finally:
        consumer.close()
    assert _on_broker(bootstrap, topic, group, 2) == {0: 7, 1: 2}
