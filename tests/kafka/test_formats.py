"""``format: json | avro | arrow`` on the Kafka source and sink and the collector's output:
the Confluent wire format against a loopback Schema Registry, schema evolution, Arrow IPC
batches, and round trips through the embedded broker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.kafka.schema_registry_server import SchemaRegistryServer, schema_id
from tests.kafka.test_source_sink import drain, source_for
from tests.kafka.util import produce, read_topic, simulated, unique
from tickflow.connectors.arrow_codec import decode_arrow_ticks, encode_arrow_messages
from tickflow.connectors.avro_codec import AvroTickDecoder, AvroTickEncoder
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.kafka_sink import KafkaSink, KafkaSinkConfig
from tickflow.connectors.schema_registry import registry_client, tick_schema_str
from tickflow.engine import cli

CONTEXT = RunContext(job_name="test", quiet=True)
V2_FIELD = {"name": "venue_latency_us", "type": ["null", "long"], "default": None}


def _schema_with(extra: dict | None = None, drop: str | None = None) -> str:
    schema = json.loads(tick_schema_str())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop]
    if extra:
        schema["fields"].append(extra)
    return json.dumps(schema)


def _by_symbol(table: pa.Table) -> dict[str, pa.Table]:
    return {s: table.filter(pc.equal(table["symbol"], s))
            for s in table.column("symbol").unique().to_pylist()}


def test_avro_values_are_confluent_wire_format_with_the_registered_id() -> None:
    ticks = simulated(20, symbols=2, seed=1)
    with SchemaRegistryServer() as registry:
        rows = AvroTickEncoder(registry.url, "t1").encode_rows(ticks, "symbol")
        ids = {schema_id(v) for _, v in rows}
        assert all(v[0] == 0 for _, v in rows)  # the magic byte
        assert ids == {1} and registry.subjects == {"t1-value": [1]}
        assert json.loads(registry.schemas[1]) == json.loads(tick_schema_str())
        # fetched back by id, through the real client
        fetched = registry_client(registry.url).get_schema(1)
        assert json.loads(fetched.schema_str)["name"] == "Tick"
        decoded, rejected, origin = AvroTickDecoder(registry.url).decode([v for _, v in rows])
    assert rejected == [] and origin.tolist() == list(range(20))
    assert pa.Table.from_batches([decoded]).equals(ticks.cast(CANONICAL_TICK_SCHEMA))


def test_schema_evolution_adding_an_optional_field_is_backward_compatible() -> None:
    ticks = simulated(10, symbols=2, seed=2)
    with SchemaRegistryServer(compatibility="BACKWARD") as registry:
        old = [v for _, v in AvroTickEncoder(registry.url, "t2").encode_rows(ticks, "symbol")]
        client = registry_client(registry.url)
        from confluent_kafka.schema_registry import Schema

        v2 = Schema(_schema_with(V2_FIELD), "AVRO")
        assert client.test_compatibility("t2-value", v2)
        assert client.register_schema("t2-value", v2) == 2
        # a reader with the new schema reads the old messages; the new field takes its default
        reader = AvroTickDecoder(registry.url, reader_schema=_schema_with(V2_FIELD))
        record, reason = reader.decode_one(old[0])
        assert reason == "" and record is not None
        assert record["venue_latency_us"] is None and record["symbol"] == ticks["symbol"][0].as_py()
        decoded, rejected, _ = reader.decode(old)
        assert rejected == [] and decoded.num_rows == 10
        # a new required field (no default) cannot read old data: refused
        required = Schema(_schema_with({"name": "venue", "type": "string"}), "AVRO")
        assert not client.test_compatibility("t2-value", required)
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema("t2-value", required)
        assert refused.value.http_status_code == 409
        assert "'venue' has no default" in str(refused.value)


def test_avro_decoder_reads_what_confluents_deserializer_reads() -> None:
    """The decoder reads the framing itself and decodes with fastavro; records must equal
    confluent-kafka's AvroDeserializer's, for the writer schema and for an evolved reader."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ticks = simulated(200, symbols=3, seed=5)
    ctx = SerializationContext("t5", MessageField.VALUE)
    with SchemaRegistryServer(compatibility="BACKWARD") as registry:
        old = [v for _, v in AvroTickEncoder(registry.url, "t5").encode_rows(ticks, "symbol")]
        registry_client(registry.url).register_schema("t5-value",
                                                      Schema(_schema_with(V2_FIELD), "AVRO"))
        new = [v for _, v in AvroTickEncoder(registry.url, "t5", _schema_with(V2_FIELD))
               .encode_rows(ticks, "symbol")]
        assert {schema_id(v) for v in old} == {1} and {schema_id(v) for v in new} == {2}
        for reader_schema in (None, _schema_with(V2_FIELD)):
            ours = AvroTickDecoder(registry.url, reader_schema=reader_schema)
            theirs = AvroDeserializer(registry_client(registry.url), reader_schema)
            for value in old + new:
                record, reason = ours.decode_one(value)
                assert reason == "" and record == theirs(value, ctx)


def test_removing_a_field_without_default_is_refused_where_old_readers_must_read() -> None:
    """BACKWARD lets a reader drop a field; FORWARD/FULL (old readers read new data) refuse
    removing one that has no default."""
    with SchemaRegistryServer(compatibility="FULL") as registry:
        client = registry_client(registry.url)
        from confluent_kafka.schema_registry import Schema

        client.register_schema("t3-value", Schema(tick_schema_str(), "AVRO"))
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema("t3-value", Schema(_schema_with(drop="symbol"), "AVRO"))
        assert refused.value.http_status_code == 409 and "'symbol'" in str(refused.value)
        # an optional field may go
        assert client.register_schema("t3-value", Schema(_schema_with(drop="last_size"),
                                                         "AVRO")) == 2


def test_avro_decoder_rejects_poison_messages_with_a_reason() -> None:
    with SchemaRegistryServer() as registry:
        good = AvroTickEncoder(registry.url, "t4").encode_rows(simulated(1), "symbol")[0][1]
        unknown_id = b"\x00" + (99).to_bytes(4, "big") + good[5:]
        values = [b'{"symbol": "BTC-USD"}', unknown_id, good[:7], good]
        decoded, rejected, origin = AvroTickDecoder(registry.url).decode(values)
    assert rejected == [(0, "not_confluent_avro"), (1, "unknown_schema_id"),
                        (2, "malformed_avro")]
    assert decoded.num_rows == 1 and origin.tolist() == [3]


def test_avro_needs_a_registry_located_in_the_job(tmp_path: Path, capsys) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: x\nmode: live\nsources:\n  - kind: kafka\n    format: avro\n"
                   "sinks:\n  - kind: console\n")
    assert cli.main(["validate", str(job)]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "job.yaml:4" in text and "format avro needs schema_registry" in text, text
    assert "Traceback" not in text


def test_arrow_messages_hold_many_ticks_of_one_key_and_decode_back() -> None:
    ticks = simulated(12_000, symbols=3, seed=4)
    messages = encode_arrow_messages(ticks, "symbol", max_rows=3_000)
    counts = pc.value_counts(ticks["symbol"]).field("counts").to_pylist()
    assert len(messages) == sum(-(-n // 3_000) for n in counts)
    assert {k for k, _ in messages} == {s.encode() for s in
                                        ticks["symbol"].unique().to_pylist()}
    values = [v for _, v in messages]
    decoded, rejected, origin = decode_arrow_ticks([b"junk", *values])
    assert rejected == [(0, "malformed_arrow")]
    assert decoded.num_rows == 12_000 and origin.min() == 1
    got, want = _by_symbol(pa.Table.from_batches([decoded])), _by_symbol(ticks)
    for s, table in want.items():  # each key's order kept
        assert got[s].equals(table.cast(CANONICAL_TICK_SCHEMA))


@pytest.mark.parametrize("fmt", ["avro", "arrow"])
def test_sink_to_source_round_trip_in_each_format(kafka_broker, tmp_path: Path, fmt) -> None:
    ticks = simulated(3_000, symbols=3, seed=5)
    topic = unique(f"ticks-{fmt}")
    with SchemaRegistryServer() as registry:
        url = registry.url if fmt == "avro" else None
        sink = KafkaSink(KafkaSinkConfig(kind="kafka", bootstrap=kafka_broker.bootstrap,
                                         topic=topic, format=fmt, schema_registry=url,
                                         create_partitions=2), CONTEXT)
        sink.open(ticks.schema)
        for batch in ticks.to_batches(max_chunksize=1_000):
            sink.write(batch)
        sink.flush()
        sink.close()
        messages = sink.count
        produce(kafka_broker.bootstrap, topic, [(b"x", b"not a tick")], partitions=2)
        source = source_for(kafka_broker.bootstrap, topic, tmp_path, format=fmt,
                            schema_registry=url).open()
        try:
            batches = drain(source, messages + 1)
        finally:
            source.close()
    got = pa.Table.from_batches([b.ticks for b in batches], schema=CANONICAL_TICK_SCHEMA)
    assert got.num_rows == 3_000
    want = _by_symbol(ticks)
    for s, table in _by_symbol(got).items():
        assert table.equals(want[s].cast(CANONICAL_TICK_SCHEMA))
    if fmt == "arrow":
        assert messages == 9  # 3 batches x 3 symbols: many ticks per message
    dead = read_dead_letters(tmp_path / "dead.jsonl")
    assert [d["reason"] for d in dead] == \
        ["not_confluent_avro" if fmt == "avro" else "malformed_arrow"]


def test_collector_writes_avro_that_the_kafka_source_reads(kafka_broker, tmp_path) -> None:
    topic = unique("coinbase-avro")
    products = ("BTC-USD", "ETH-USD")
    with SchemaRegistryServer() as registry, CoinbaseExchangeServer(
            synthetic_frames(products, 400), heartbeat_interval_s=0.2, speed=0) as server:
        code = cli.main(["collect", "coinbase", "--url", server.url, "--products", *products,
                         "-k", kafka_broker.bootstrap, "--topic", topic, "-f", "avro",
                         "--schema-registry", registry.url, "--max-ticks", "400",
                         "--log-level", "WARNING"])
        assert code == 0
        raw = read_topic(kafka_broker.bootstrap, topic, 400)
        assert all(m.value()[0] == 0 and schema_id(m.value()) == 1 for m in raw)
        assert registry.subjects == {f"{topic}-value": [1]}
        source = source_for(kafka_broker.bootstrap, topic, tmp_path, format="avro",
                            schema_registry=registry.url).open()
        try:
            batches = drain(source, len(raw))
        finally:
            source.close()
    got = pa.Table.from_batches([b.ticks for b in batches], schema=CANONICAL_TICK_SCHEMA)
    assert got.num_rows == len(raw)
    assert set(got["symbol"].to_pylist()) == set(products)
    assert np.all(np.isfinite(got["price"].to_numpy()))
    assert sum(b.dead_letter_count for b in batches) == 0


def test_avro_sink_derives_a_schema_from_the_written_columns(kafka_broker) -> None:
    """A signals topic in Avro: the record schema comes from the columns' Arrow types."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ticks = simulated(400, symbols=2, seed=6)
    buy = (np.arange(ticks.num_rows) % 7 == 0).astype(np.int8)
    rows = ticks.append_column("buy", pa.array(buy))
    topic = unique("signals-avro")
    with SchemaRegistryServer() as registry:
        sink = KafkaSink(KafkaSinkConfig(
            kind="kafka", bootstrap=kafka_broker.bootstrap, topic=topic, format="avro",
            schema_registry=registry.url, columns=["timestamp", "symbol", "price", "buy"],
            only_rows_with=["buy"]), CONTEXT)
        sink.open(rows.schema)
        for batch in rows.to_batches(max_chunksize=100):
            sink.write(batch)
        sink.flush()
        sink.close()
        messages = read_topic(kafka_broker.bootstrap, topic, int(buy.sum()))
        schema = json.loads(registry.schemas[1])
        decode = AvroDeserializer(registry_client(registry.url))
        ctx = SerializationContext(topic, MessageField.VALUE)
        records = [decode(m.value(), ctx) for m in messages]
    assert [f["name"] for f in schema["fields"]] == ["timestamp", "symbol", "price", "buy"]
    assert schema["fields"][3]["type"] == ["null", "long"]
    assert len(records) == int(buy.sum()) and all(r["buy"] == 1 for r in records)
    want = rows.filter(pa.array(buy == 1)).select(["timestamp", "symbol", "price"]).to_pylist()
    got = sorted(records, key=lambda r: (r["timestamp"], r["symbol"]))
    want.sort(key=lambda r: (r["timestamp"], r["symbol"]))
    assert [(r["timestamp"], r["symbol"], r["price"]) for r in got] == \
        [(r["timestamp"], r["symbol"], r["price"]) for r in want]
