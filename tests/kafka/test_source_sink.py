"""Kafka source and sink on the real embedded broker: round trip, resume, dead letters,
and a broker that is down at start."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.kafka.util import produce, produce_ticks, read_topic, simulated, unique
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.embedded_broker import EmbeddedBroker, free_port, resolve_bootstrap
from tickflow.connectors.kafka_client import wait_for_broker
from tickflow.connectors.kafka_sink import KafkaSink, KafkaSinkConfig
from tickflow.connectors.kafka_source import KafkaSource, KafkaSourceConfig
from tickflow.engine.errors import SourceError

CONTEXT = RunContext(job_name="test", quiet=True)


def source_for(bootstrap: str, topic: str, tmp_path: Path, **extra) -> KafkaSource:
    config = KafkaSourceConfig(kind="kafka", bootstrap=bootstrap, topic=topic,
                               dead_letter_path=str(tmp_path / "dead.jsonl"),
                               **{"group_id": unique("g"), **extra})
    return KafkaSource(config, CONTEXT)


def drain(source: KafkaSource, messages: int, timeout_s: float = 30.0) -> list:
    got, seen = [], 0
    deadline = time.monotonic() + timeout_s
    while seen < messages:
        assert time.monotonic() < deadline, f"only {seen} of {messages} messages arrived"
        b = source.poll(timeout_s=0.5)
        if b is not None:
            got.append(b)
            seen += b.message_count
    return got


def test_resolve_bootstrap_passes_real_servers_through() -> None:
    assert resolve_bootstrap("broker1:9092,broker2:9092") == ("broker1:9092,broker2:9092", None)
    servers, broker = resolve_bootstrap("embedded")
    try:
        assert broker is not None and servers == broker.bootstrap and broker.is_running
    finally:
        broker.stop()
    assert not broker.is_running


def test_sink_then_source_round_trip(kafka_broker, tmp_path: Path) -> None:
    ticks = simulated(5_000, symbols=4, seed=3)
    topic = unique("ticks")
    sink = KafkaSink(KafkaSinkConfig(kind="kafka", bootstrap=kafka_broker.bootstrap,
                                     topic=topic, key="symbol", create_partitions=3), CONTEXT)
    sink.open(ticks.schema)
    for batch in ticks.to_batches(max_chunksize=1_000):
        sink.write(batch)
    sink.flush()
    assert sink.close() == f"kafka: wrote 5,000 messages to topic {topic}"

    source = source_for(kafka_broker.bootstrap, topic, tmp_path).open()
    try:
        batches = drain(source, 5_000)
    finally:
        source.close()
    got = pa.Table.from_batches([b.ticks for b in batches], schema=CANONICAL_TICK_SCHEMA)
    assert got.num_rows == 5_000
    # three partitions: the global order interleaves, each symbol's order is kept
    for sym in ticks.column("symbol").unique().to_pylist():
        mine = got.filter(pa.compute.equal(got["symbol"], sym))
        want = ticks.filter(pa.compute.equal(ticks["symbol"], sym))
        assert mine.equals(want.cast(CANONICAL_TICK_SCHEMA))
    assert sum(b.dead_letter_count for b in batches) == 0


def test_sink_columns_key_and_row_filter(kafka_broker) -> None:
    topic = unique("signals")
    batch = pa.RecordBatch.from_pydict({"symbol": ["A", "B", "A"], "price": [1.0, 2.0, 3.0],
                                        "buy": pa.array([0, 1, 0], pa.int8()),
                                        "sell": pa.array([0, 0, 1], pa.int8())})
    sink = KafkaSink(KafkaSinkConfig(kind="kafka", bootstrap=kafka_broker.bootstrap,
                                     topic=topic, columns=["symbol", "price", "buy", "sell"],
                                     only_rows_with=["buy", "sell"]), CONTEXT)
    sink.open(batch.schema)
    sink.write(batch)
    sink.close()
    msgs = read_topic(kafka_broker.bootstrap, topic, expected=2)
    assert [(m.key(), json.loads(m.value())) for m in msgs] == [
        (b"B", {"symbol": "B", "price": 2.0, "buy": 1, "sell": 0}),
        (b"A", {"symbol": "A", "price": 3.0, "buy": 0, "sell": 1})]


def test_a_write_larger_than_the_local_queue_arrives_whole_and_in_order(kafka_broker) -> None:
    """A write's messages go out in one call; those the full local queue refused are
    produced again after the others, so every message arrives once, in order, and the
    write is acknowledged only when all of them are."""
    topic = unique("signals")
    n = 40
    batch = pa.RecordBatch.from_pydict({"symbol": ["A"] * n, "i": list(range(n)),
                                        "buy": pa.array([1] * n, pa.int8())})
    sink = KafkaSink(KafkaSinkConfig(kind="kafka", bootstrap=kafka_broker.bootstrap,
                                     topic=topic, only_rows_with=["buy"],
                                     producer={"queue.buffering.max.messages": 7}), CONTEXT)
    sink.open(batch.schema)
    sink.write(batch)
    assert sink.delivery_mark() == 1
    sink.flush(30)
    assert sink.acknowledged_mark() == 1
    sink.close()
    msgs = read_topic(kafka_broker.bootstrap, topic, expected=n)
    assert [json.loads(m.value())["i"] for m in msgs] == list(range(n))


def test_committed_offsets_are_resumed(kafka_broker, tmp_path: Path) -> None:
    topic, group = unique("ticks"), unique("group")
    produce_ticks(kafka_broker.bootstrap, topic, simulated(3_000, symbols=2))
    first = source_for(kafka_broker.bootstrap, topic, tmp_path, group_id=group,
                       batch_size=1_000).open()
    try:
        batch = drain(first, 1)[0]
        assert batch.message_count == 1_000
        assert first.commit(batch.offsets)
    finally:
        first.close()
    second = source_for(kafka_broker.bootstrap, topic, tmp_path, group_id=group).open()
    try:
        rest = drain(second, 2_000)
    finally:
        second.close()
    seqs = [s for b in rest for s in b.ticks.column("sequence").to_pylist()]
    assert len(seqs) == 2_000  # exactly the uncommitted messages, none twice
    assert sum(b.message_count for b in rest) == 2_000


def test_malformed_messages_go_to_dead_letters(kafka_broker, tmp_path: Path) -> None:
    topic = unique("ticks")
    good = json.dumps({"timestamp": "2026-08-09T12:00:00Z", "symbol": "A", "price": "1.5",
                       "sequence": "1"}).encode()
    produce(kafka_broker.bootstrap, topic,
            [(b"A", good), (b"A", b"{oops"), (b"A", b""), (b"A", b'{"symbol": "A"}')])
    source = source_for(kafka_broker.bootstrap, topic, tmp_path).open()
    try:
        batches = drain(source, 4)
    finally:
        source.close()
    assert sum(b.ticks.num_rows for b in batches) == 1
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert sorted((r["reason"], r["payload"], r["offset"]) for r in records) == [
        ("empty_value", "", 2), ("malformed_json", "{oops", 1),
        ("missing_timestamp", '{"symbol": "A"}', 3)]
    assert dict(source.dead_letters.counts) == {"empty_value": 1, "malformed_json": 1,
                                                "missing_timestamp": 1}


def test_broker_down_at_start_is_a_clear_error_after_bounded_retries() -> None:
    port = free_port()
    retries: list[float] = []
    start = time.monotonic()
    with pytest.raises(SourceError, match=rf"no Kafka broker answers at 127.0.0.1:{port} "
                                          r"\(waited \d+ s\); start one"):
        wait_for_broker(f"127.0.0.1:{port}", timeout_s=1.5, on_retry=retries.append)
    assert 1.4 < time.monotonic() - start < 10
    assert len(retries) >= 2  # it retried, with backoff, before giving up


def test_source_waits_for_a_broker_that_comes_up(tmp_path: Path) -> None:
    port = free_port()
    topic = unique("late")
    source = source_for(f"127.0.0.1:{port}", topic, tmp_path, connect_timeout_s=60)
    messages: list[str] = []
    source.status = messages.append
    opened = threading.Event()
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            source.open()
            opened.set()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=open_it)
    t.start()
    deadline = time.monotonic() + 30
    while not messages:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not opened.is_set()
    assert messages[0].startswith(f"waiting for Kafka at 127.0.0.1:{port}")
    broker = EmbeddedBroker(port=port).start()
    try:
        t.join(60)
        assert opened.is_set(), errors
        produce_ticks(broker.bootstrap, topic, simulated(100, symbols=1))
        assert sum(b.ticks.num_rows for b in drain(source, 100)) == 100
    finally:
        source.close()
        broker.stop()


def test_credentials_come_from_the_environment_and_never_show() -> None:
    from tickflow.connectors.kafka_client import (
        KafkaSecurity,
        client_settings,
        redacted,
        security_settings,
    )

    security = KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             username_env="TF_TEST_USER", password_env="TF_TEST_PASS")
    with pytest.raises(SourceError, match=r"needs the environment variable.*TF_TEST_USER, "
                                          r"TF_TEST_PASS"):
        security_settings(security, env={})
    env = {"TF_TEST_USER": "alice", "TF_TEST_PASS": "hunter2"}
    wrapped = security_settings(security, env=env)
    assert "hunter2" not in repr(wrapped) and "alice" not in repr(wrapped)
    config = KafkaSourceConfig(kind="kafka", security=security)
    assert "hunter2" not in repr(config)  # the YAML holds variable names, not secrets
    import os

    os.environ.update(env)
    try:
        settings = client_settings("b:9092", security)
    finally:
        for k in env:
            os.environ.pop(k)
    assert settings["sasl.password"] == "hunter2"  # revealed only for the client itself
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    shown = repr(redacted(settings))
    assert "hunter2" not in shown and "alice" not in shown


def test_a_checkpoint_after_a_resume_names_only_the_tail_produced_again(kafka_broker) -> None:
    """A checkpointed sink resumed at offset 4 of a topic holding 10 messages (the killed run's
    tail): the resumed run produces rows 4.. again, each skipped once. A checkpoint taken after
    rows 4-6 names offset 7, not the topic's end (10): a resume from it must still skip rows
    7-9, else they would be written twice."""
    ticks = simulated(10, symbols=1, seed=4)
    topic = unique("resumed")

    def new_sink() -> KafkaSink:
        return KafkaSink(KafkaSinkConfig(kind="kafka", bootstrap=kafka_broker.bootstrap,
                                         topic=topic, key="symbol"), CONTEXT)

    first = new_sink()
    first.seek(None)
    first.open(ticks.schema)
    first.write(ticks.to_batches()[0])
    assert first.checkpoint()["offsets"] == {"0": 10}
    first.close()

    resumed = new_sink()
    resumed.seek({"topic": topic, "offsets": {"0": 4}})
    resumed.open(ticks.schema)
    assert resumed.checkpoint()["offsets"] == {"0": 4}  # nothing produced again yet
    resumed.write(ticks.slice(4, 3).to_batches()[0])
    assert resumed.skipped == 3
    assert resumed.checkpoint()["offsets"] == {"0": 7}
    resumed.write(ticks.slice(7, 3).to_batches()[0])
    assert resumed.checkpoint()["offsets"] == {"0": 10}
    resumed.write(ticks.slice(0, 1).to_batches()[0])  # a new message after the tail
    assert resumed.checkpoint()["offsets"] == {"0": 11}
    resumed.close()
    assert len(read_topic(kafka_broker.bootstrap, topic, 11)) == 11
