"""Dead-letter counts above 1 through the Kafka source on the real embedded broker: several bad
values of one reason and of mixed reasons among good ones. Totals, per-reason counts, the
batches' dead-letter counts and the records written (with their offsets) must all agree."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.kafka.test_source_sink import drain, source_for
from tests.kafka.util import produce, unique
from tickflow.connectors.dead_letter import read_dead_letters


def good(seq: int) -> bytes:
    return json.dumps({"timestamp": "2026-08-09T12:00:00Z", "symbol": "A",
                       "price": str(1.5 + seq), "sequence": str(seq)}).encode()


# offset -> value: 5 good, then 3 malformed JSON, 2 empty and 2 without a timestamp, mixed
VALUES = [good(0), b"{oops", b"", good(1), b"[1,", b'{"symbol": "A"}', good(2), b"",
          b"{", good(3), b'{"symbol": "B", "price": "2"}', good(4)]
EXPECTED = {1: "malformed_json", 2: "empty_value", 4: "malformed_json",
            5: "missing_timestamp", 7: "empty_value", 8: "malformed_json",
            10: "missing_timestamp"}


def test_repeated_and_mixed_reasons_are_each_counted(kafka_broker, tmp_path: Path) -> None:
    topic = unique("ticks")
    produce(kafka_broker.bootstrap, topic, [(b"A", v) for v in VALUES])
    source = source_for(kafka_broker.bootstrap, topic, tmp_path).open()
    try:
        batches = drain(source, len(VALUES))
    finally:
        source.close()
    assert [s for b in batches for s in b.ticks.column("sequence").to_pylist()] == [0, 1, 2, 3, 4]
    assert source.dead_letters is not None
    assert dict(source.dead_letters.counts) == dict(Counter(EXPECTED.values()))
    assert source.dead_letters.total == 7 == sum(b.dead_letter_count for b in batches)
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert {r["offset"]: r["reason"] for r in records} == EXPECTED
    assert len(records) == 7
    assert all(r["payload"] == VALUES[r["offset"]].decode() for r in records)
