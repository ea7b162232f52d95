"""Poison messages on a real embedded broker: dead-lettered with their reason, never a crash,
and the committed offset moves past them so that a restart does not read them again."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kafka.test_source_sink import drain, source_for
from tests.kafka.util import produce, simulated, unique
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.tick_codec import encode_tick_rows

POISON = [
    (b"[" * 5000 + b"]" * 5000, "too_deep"),  # a RecursionError in json.loads on main
    (b"null", "not_an_object"),  # crashed the process inside pyarrow's JSON reader
    (b'{"timestamp": "2026-08-09T12:00:00Z", "symbol": "A", "sequence": 1' + b"0" * 30
     + b"}", "bad_sequence"),  # past int64: an OverflowError building the batch
    (b"   ", "malformed_json"),
]


def test_poison_messages_are_dead_lettered_and_committed_past(kafka_broker,
                                                              tmp_path: Path) -> None:
    topic, group = unique("poison"), unique("group")
    good = encode_tick_rows(simulated(60, symbols=2))
    pairs = good[:20] + [(b"A", v) for v, _ in POISON[:2]] + good[20:40] + \
        [(b"A", v) for v, _ in POISON[2:]] + good[40:]
    produce(kafka_broker.bootstrap, topic, pairs)
    first = source_for(kafka_broker.bootstrap, topic, tmp_path, group_id=group,
                       batch_size=16).open()
    try:
        batches = drain(first, len(pairs))
        for batch in batches:  # what the live executor does once the outputs are written
            assert first.commit(batch.offsets)
        counts = dict(first.dead_letters.counts)
    finally:
        first.close()
    assert sum(b.ticks.num_rows for b in batches) == 60
    got = [s for b in batches for s in b.ticks.column("sequence").to_pylist()]
    assert got == [json.loads(v)["sequence"] for _, v in good]  # in order, none shifted
    assert counts == {reason: 1 for _, reason in POISON}
    assert sum(b.dead_letter_count for b in batches) == 4
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert sorted((r["offset"], r["reason"]) for r in records) == [
        (20, "too_deep"), (21, "not_an_object"), (42, "bad_sequence"),
        (43, "malformed_json")]
    assert len(next(r for r in records if r["reason"] == "too_deep")["payload"]) == 10_000

    # a restart of the same group: nothing left to read, the poison is not seen again
    second = source_for(kafka_broker.bootstrap, topic, tmp_path, group_id=group).open()
    try:
        again = [second.poll(timeout_s=0.5) for _ in range(4)]
        assert all(b is None for b in again)
        assert second.dead_letters.total == 0
    finally:
        second.close()
    assert len(read_dead_letters(tmp_path / "dead.jsonl")) == 4
