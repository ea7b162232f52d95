"""Consumed Kafka messages to a batch of ticks: decode, and dead-letter what cannot be decoded.

One C call per message and field, mapped in C (``map(Message.value, ...)``: no Python frame a
message): this is the live path's hot loop. Broken ticks (bad prices, crossed quotes, time
going backwards) are the driver's quality stage's, as in every other mode.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import numpy as np

from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.kafka_source_config import ConsumedBatch
from tickflow.connectors.kafka_topics import SENT_HEADER

_SECOND = itemgetter(1)  # a message's timestamp: (type, milliseconds)


def decode_messages(messages: list[Any], decoder: Callable[[list[bytes]], Any],
                    dead_letters: DeadLetters, one_partition: bool) -> ConsumedBatch:
    """The ticks of ``messages`` (non-empty, none an error) and the offset after them per
    partition; messages that do not decode to ticks go to ``dead_letters``."""
    from confluent_kafka import Message

    dead_before = dead_letters.total
    values: list[bytes] = list(map(Message.value, messages))
    if one_partition:
        offsets = {messages[-1].partition(): messages[-1].offset() + 1}
    else:  # built in C; a partition's later (higher) offset overwrites its earlier ones
        last = dict(zip(map(Message.partition, messages), map(Message.offset, messages),
                        strict=True))
        offsets = {p: o + 1 for p, o in last.items()}
    first = messages[0].headers()
    if first and any(h[0] == SENT_HEADER for h in first):
        sent = np.array([_sent_us(m.headers()) for m in messages], dtype=np.int64)
    else:
        sent = np.fromiter(map(_SECOND, map(Message.timestamp, messages)), dtype=np.int64,
                           count=len(messages)) * 1000
    keep: list[int] = list(range(len(messages)))
    if not all(values):
        keep = [i for i, v in enumerate(values) if v]
        for i, v in enumerate(values):
            if not v:
                m = messages[i]
                dead_letters.add("empty_value", b"", topic=m.topic(),
                                 partition=m.partition(), offset=m.offset())
        values = [values[i] for i in keep]
    ticks, rejected, origin = decoder(values)
    for index, reason in rejected:
        m = messages[keep[index]]
        dead_letters.add(reason, values[index], topic=m.topic(),
                         partition=m.partition(), offset=m.offset())
    # nothing empty: the values are the messages (no list of 20,000 indices to convert)
    rows = origin if len(keep) == len(messages) else np.asarray(keep, dtype=np.int64)[origin]
    return ConsumedBatch(ticks, offsets, len(messages), sent[rows],
                         dead_letters.total - dead_before)


def usable_messages(messages: list[Any]) -> tuple[list[Any], bool, list[str]]:
    """The messages that are not errors (``messages`` itself when none is: checked in C),
    whether the broker or the topic was lost, and the text of any other error (partition EOF
    is none)."""
    from confluent_kafka import KafkaError, Message

    errors = list(map(Message.error, messages))
    if errors.count(None) == len(errors):
        return messages, False, []
    lost_codes = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                  KafkaError._UNKNOWN_PARTITION)
    lost = any(e is not None and e.code() in lost_codes for e in errors)
    problems = [e.str() for e in errors if e is not None and e.code() not in lost_codes
                and e.code() != KafkaError._PARTITION_EOF]
    return [m for m, e in zip(messages, errors, strict=True) if e is None], lost, problems



def _sent_us(headers: list[tuple[str, bytes]] | None) -> int:
    for name, value in headers or ():
        if name == SENT_HEADER:
            return int(value)
    return 0
