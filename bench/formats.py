"""Kafka message formats side by side: JSON, Avro (Confluent wire format) and Arrow IPC.

For each format, the same simulated ticks are encoded as a sink would (batches of
``--batch`` rows), produced to a fresh topic on the embedded broker, then consumed from
the start and decoded into canonical tick batches as the Kafka source does. Encode,
produce (to acknowledgement) and consume (fetch + decode) are timed apart; the table gives
messages/s and ticks/s for each stage, decode alone, and end to end (encode + produce +
consume, one after the other).

Avro needs a Schema Registry: ``--schema-registry URL`` uses a real one; without it the
tests' loopback registry (``tests/kafka/schema_registry_server.py``) is started, which only
serves the first lookup of each schema (the client caches ids and schemas).

    python bench/formats.py                  # 200K ticks
    python bench/formats.py --ticks 1000000 --formats json arrow
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from tickflow.connectors.embedded_broker import EmbeddedBroker  # noqa: E402
from tickflow.connectors.formats import row_encoder, tick_decoder  # noqa: E402
from tickflow.connectors.kafka_client import client_settings, ensure_topic  # noqa: E402


def simulated(rows: int, symbols: int) -> pa.Table:
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=symbols, seed=7),
                          RunContext(job_name="bench"))
    return pa.Table.from_batches(list(src.batches(None, 65_536)))


def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(client_settings(bootstrap, **{
        "linger.ms": 5, "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": 8 << 20}))
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit(f"{topic}: not every message was acknowledged")


def consume_decode(bootstrap: str, topic: str, messages: int, fmt: str,
                   registry: str | None) -> tuple[int, float]:
    """Consume ``messages`` from the start and decode them; (ticks, seconds decoding)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_settings(bootstrap, **{
        "group.id": f"bench-{topic}", "enable.auto.commit": False,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    decode = tick_decoder(fmt, topic, registry)  # type: ignore[arg-type]
    seen = ticks = 0
    decode_s = 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < messages and time.monotonic() < deadline:
            batch = consumer.consume(20_000, 0.05)
            values = [m.value() for m in batch if m.error() is None]
            if not values:
                continue
            seen += len(values)
            start = time.perf_counter()
            decoded, rejected, _ = decode(values)
            decode_s += time.perf_counter() - start
            if rejected:
                raise SystemExit(f"{fmt}: {len(rejected)} messages rejected: {rejected[:3]}")
            ticks += decoded.num_rows
    finally:
        consumer.close()
    return ticks, decode_s


def run(fmt: str, ticks: pa.Table, bootstrap: str, registry: str | None,
        batch_rows: int) -> dict[str, float]:
    topic = f"bench-{fmt}-{time.time_ns()}"
    ensure_topic(client_settings(bootstrap), topic, 1)
    encode = row_encoder(fmt, topic, ticks.schema, "symbol", None,  # type: ignore[arg-type]
                         registry if fmt == "avro" else None)
    start = time.perf_counter()
    pairs = [p for batch in ticks.to_batches(max_chunksize=batch_rows) for p in encode(batch)]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    produce(bootstrap, topic, pairs)
    produce_s = time.perf_counter() - start
    start = time.perf_counter()
    got, decode_s = consume_decode(bootstrap, topic, len(pairs), fmt,
                                   registry if fmt == "avro" else None)
    consume_s = time.perf_counter() - start
    if got != ticks.num_rows:
        raise SystemExit(f"{fmt}: decoded {got:,} ticks of {ticks.num_rows:,}")
    total = encode_s + produce_s + consume_s
    return {"messages": len(pairs), "bytes": sum(len(v) for _, v in pairs),
            "encode_s": encode_s, "produce_s": produce_s, "consume_s": consume_s,
            "decode_s": decode_s, "total_s": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=200_000)
    p.add_argument("--symbols", type=int, default=14)
    p.add_argument("--batch", type=int, default=5_000, help="rows per encoded batch")
    p.add_argument("--formats", nargs="+", default=["json", "avro", "arrow"],
                   choices=["json", "avro", "arrow"])
    p.add_argument("--schema-registry", default=None, metavar="URL")
    args = p.parse_args()
    ticks = simulated(args.ticks, args.symbols)
    n = ticks.num_rows
    with contextlib.ExitStack() as stack:
        registry = args.schema_registry
        if registry is None and "avro" in args.formats:
            from tests.kafka.schema_registry_server import SchemaRegistryServer

            registry = stack.enter_context(SchemaRegistryServer()).url
        broker = EmbeddedBroker().start()
        stack.callback(broker.stop)
        print(f"{n:,} ticks, {args.symbols} symbols, batches of {args.batch:,} rows, "
              f"embedded broker {broker.bootstrap}")
        print(f"{'format':<7}{'messages':>10}{'B/tick':>8}{'encode tk/s':>13}"
              f"{'produce msg/s':>15}{'produce tk/s':>14}{'consume msg/s':>15}"
              f"{'consume tk/s':>14}{'decode tk/s':>13}{'end-to-end tk/s':>17}")
        for fmt in args.formats:
            r = run(fmt, ticks, broker.bootstrap, registry, args.batch)
            print(f"{fmt:<7}{r['messages']:>10,}{r['bytes'] / n:>8.1f}"
                  f"{n / r['encode_s']:>13,.0f}{r['messages'] / r['produce_s']:>15,.0f}"
                  f"{n / r['produce_s']:>14,.0f}{r['messages'] / r['consume_s']:>15,.0f}"
                  f"{n / r['consume_s']:>14,.0f}{n / r['decode_s']:>13,.0f}"
                  f"{n / r['total_s']:>17,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
