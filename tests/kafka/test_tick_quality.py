"""Broken ticks through a real broker: the Kafka source only decodes (messages that are not
ticks go to its dead letters); bad prices, crossed quotes and time going backwards are left to
the job's one quality policy, which the driver applies as in every other mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.kafka.util import produce, unique
from tickflow.connectors.base import RunContext
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.kafka_source import KafkaSource, KafkaSourceConfig
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job


def tick(seq: int, ts_s: float, price: float | None = 100.0, bid: float = 99.9,
         ask: float = 100.1, symbol: str = "BTC-USD") -> dict:
    return {"timestamp": f"2026-08-09T12:{int(ts_s) // 60:02d}:{ts_s % 60:09.6f}Z",
            "symbol": symbol, "exchange": "test", "price": price, "best_bid": bid,
            "best_ask": ask, "sequence": seq}


# one clean tick, then one of each broken kind, then clean ones again; the reason is the
# driver's (engine/runtime/quality.py) under `quality: {out_of_order: drop}`
CASES = [
    (tick(1, 10.0), None),
    (tick(2, 10.1, price=None), "bad_price"),
    (tick(3, 10.2, price=0.0), "bad_price"),
    (tick(4, 10.3, price=-5.0), "bad_price"),
    (tick(5, 10.4, bid=100.2, ask=100.0), "crossed_quote"),
    (tick(6, 2.0), "out_of_order"),                    # behind BTC-USD's 10.0
    (tick(7, 10.5, symbol="ETH-USD"), None),
    (tick(8, 3.0, symbol="ETH-USD"), "out_of_order"),   # the order is per symbol
    (tick(9, 10.6), None),
]
NOT_A_TICK = b'{"symbol": "BTC-USD", "price": "lots"'   # malformed JSON


def test_the_source_decodes_and_leaves_broken_ticks_to_the_job(kafka_broker,
                                                               tmp_path: Path) -> None:
    topic = unique("quality")
    produce(kafka_broker.bootstrap, topic,
            [(b"k", json.dumps(t).encode()) for t, _ in CASES] + [(b"k", NOT_A_TICK)])
    config = KafkaSourceConfig(kind="kafka", bootstrap=kafka_broker.bootstrap, topic=topic,
                               group_id=unique("g"),
                               dead_letter_path=str(tmp_path / "dead.jsonl"))
    source = KafkaSource(config, RunContext(job_name="t", quiet=True)).open()
    batches = []
    try:
        while sum(b.message_count for b in batches) < len(CASES) + 1:
            got = source.poll(timeout_s=1.0)
            if got is not None:
                batches.append(got)
    finally:
        source.close()
    seqs = [s for b in batches for s in b.ticks.column("sequence").to_pylist()]
    assert seqs == list(range(1, len(CASES) + 1))  # every tick, broken or not
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert len(records) == 1 and records[0]["offset"] == len(CASES)
    assert records[0]["payload"].encode() == NOT_A_TICK  # the raw message is kept


LIVE = """\
name: quality-live
mode: live
sources:
  - id: ticks
    kind: kafka
    bootstrap: {bootstrap}
    topic: {topic}
    group_id: {topic}-g
    end_when_idle_s: 2
    dead_letter_path: {tmp}/not_ticks.jsonl
steps:
  - {{kernel: ema, params: {{span: 3}}}}
quality: {{out_of_order: drop, dead_letter_path: {tmp}/dropped.jsonl}}
"""


def test_a_live_job_drops_and_keeps_broken_ticks_by_the_jobs_policy(kafka_broker,
                                                                   tmp_path: Path) -> None:
    from tickflow.engine.executors.live import run_live

    topic = unique("quality-live")
    produce(kafka_broker.bootstrap, topic,
            [(t["symbol"].encode(), json.dumps(t).encode()) for t, _ in CASES]
            + [(b"k", NOT_A_TICK)])
    path = tmp_path / "live.yaml"
    path.write_text(LIVE.format(bootstrap=kafka_broker.bootstrap, topic=topic, tmp=tmp_path))
    summary = run_live(compile_job(load_job(str(path))))
    expected: dict[str, int] = {}
    for _, reason in CASES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert summary.quality_counts == expected
    assert sum(summary.dead_letters.values()) == 1
    dropped = read_dead_letters(tmp_path / "dropped.jsonl")
    assert sorted(r["reason"] for r in dropped) == sorted(r for _, r in CASES if r)
    assert read_dead_letters(tmp_path / "not_ticks.jsonl")[0]["payload"].encode() == NOT_A_TICK


def test_a_source_level_quality_block_is_refused_with_where_it_belongs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError, match="job's own `quality:` block"):
        KafkaSourceConfig(kind="kafka", quality={"policy": "drop"})
    job = tmp_path / "old.yaml"
    job.write_text(LIVE.format(bootstrap="localhost:1", topic="t", tmp=tmp_path).replace(
        "    end_when_idle_s: 2\n", "    end_when_idle_s: 2\n    quality: {policy: drop}\n"))
    from tickflow.engine.cli import main

    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    assert f"{job}:10:" in err and "sources[0].quality" in err
    assert "job's own `quality:` block" in err
