"""Broken ticks: each case flagged, counted, and routed by the YAML policy, through a real
broker and the Kafka source."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.kafka_source import KafkaSource, KafkaSourceConfig
from tickflow.connectors.tick_quality import TickQuality, TickQualityConfig, parse_duration_us
from tests.kafka.util import produce, unique


def tick(seq: int, ts_s: float, price: float | None = 100.0, bid: float = 99.9,
         ask: float = 100.1, symbol: str = "BTC-USD") -> dict:
    return {"timestamp": f"2026-08-09T12:{int(ts_s) // 60:02d}:{ts_s % 60:09.6f}Z",
            "symbol": symbol, "exchange": "test", "price": price, "best_bid": bid,
            "best_ask": ask, "sequence": seq}


# one clean tick, then one of each broken kind, then clean ones again
CASES = [
    (tick(1, 10.0), None),
    (tick(2, 10.1, price=None), "nan_price"),
    (tick(3, 10.2, price=0.0), "non_positive_price"),
    (tick(4, 10.3, price=-5.0), "non_positive_price"),
    (tick(5, 10.4, bid=100.2, ask=100.0), "crossed_quote"),
    (tick(6, 2.0), "late_timestamp"),                  # 8.4 s behind, lateness 5 s
    (tick(7, 7.0), None),                              # 3.4 s behind: within lateness
    (tick(8, 2.5, symbol="ETH-USD"), None),            # the watermark is per symbol
    (tick(9, 10.5), None),
]


def test_durations() -> None:
    assert parse_duration_us("500ms") == 500_000
    assert parse_duration_us("5s") == 5_000_000
    assert parse_duration_us("2m") == 120_000_000
    assert parse_duration_us(1.5) == 1_500_000
    with pytest.raises(ValueError, match="duration"):
        TickQualityConfig(max_lateness="soon")


def test_each_case_is_flagged_with_its_reason() -> None:
    quality = TickQuality(TickQualityConfig())
    batch = pa.RecordBatch.from_pylist(
        [{**t, "timestamp": pa.scalar(t["timestamp"]).cast(pa.timestamp("us", "UTC")).as_py()}
         for t, _ in CASES], schema=CANONICAL_TICK_SCHEMA)
    flagged = quality.check(batch)
    assert flagged == [(i, r) for i, (_, r) in enumerate(CASES) if r is not None]
    assert dict(quality.counts) == {"nan_price": 1, "non_positive_price": 2,
                                    "crossed_quote": 1, "late_timestamp": 1}
    # the watermark carries to the next batch
    again = quality.check(batch.slice(5, 1))
    assert again == [(0, "late_timestamp")]


def _consume(bootstrap: str, policy: str, tmp_path: Path) -> tuple[KafkaSource, list]:
    topic = unique("quality")
    produce(bootstrap, topic, [(b"k", json.dumps(t).encode()) for t, _ in CASES])
    config = KafkaSourceConfig(kind="kafka", bootstrap=bootstrap, topic=topic,
                               group_id=unique("g"), quality={"policy": policy},
                               dead_letter_path=str(tmp_path / "dead.jsonl"))
    source = KafkaSource(config, RunContext(job_name="t", quiet=True)).open()
    batches = []
    try:
        while sum(b.message_count for b in batches) < len(CASES):
            got = source.poll(timeout_s=1.0)
            if got is not None:
                batches.append(got)
    finally:
        source.close()
    return source, batches


@pytest.mark.parametrize("policy", ["dead_letter", "drop", "keep"])
def test_policy_routes_flagged_ticks(kafka_broker, tmp_path: Path, policy: str) -> None:
    source, batches = _consume(kafka_broker.bootstrap, policy, tmp_path)
    seqs = [s for b in batches for s in b.ticks.column("sequence").to_pylist()]
    expected_counts = {"nan_price": 1, "non_positive_price": 2, "crossed_quote": 1,
                       "late_timestamp": 1}
    flagged = {}
    for b in batches:
        for k, v in b.flagged.items():
            flagged[k] = flagged.get(k, 0) + v
    assert flagged == expected_counts
    assert dict(source.quality.counts) == expected_counts
    clean = [i + 1 for i, (_, r) in enumerate(CASES) if r is None]
    if policy == "keep":
        assert seqs == list(range(1, len(CASES) + 1))
    else:
        assert seqs == clean
    records = read_dead_letters(tmp_path / "dead.jsonl") \
        if (tmp_path / "dead.jsonl").exists() else []
    if policy == "dead_letter":
        assert sorted(r["reason"] for r in records) == sorted(
            r for _, r in CASES if r is not None)
        late = next(r for r in records if r["reason"] == "late_timestamp")
        assert json.loads(late["payload"])["sequence"] == 6  # the raw message is kept
        assert late["offset"] == 5 and late["partition"] == 0
    else:
        assert records == []
