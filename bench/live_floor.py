"""The live path's floor: the broker and client alone, at the same offered rate (bench/live.py).

The same producer process as the job's latency rows (``live_producer.producer_main``: paced
every 1 ms, each message stamped with its send time) feeds a bare confluent-kafka consumer
with the job's Kafka source settings (``kafka_source_config.consumer_settings``) and the
source's poll: what has arrived at once, else wait up to ``linger_ms`` for the first message.
For each batch it
produces one "signal" message straight back to a signal topic with the job's Kafka sink
settings (``kafka_sink.producer_settings``, ``linger_ms: 0`` as in a live job: librdkafka
gets 0.5 ms, one request a write), then counts
every tick's latency the way the job's observer does (now, after the produce call, minus the
send stamp). No decode, no features, no rules: what is left is the broker's and the client's
own latency on this machine, which no change inside the job can go below.

    python bench/live_floor.py --rate 20000 --seconds 5
    python bench/live_floor.py --rate 20000 --consumer fetch.wait.max.ms=0 --producer linger.ms=1
    python bench/live_floor.py --probe 0,2000,5000      # the broker's fetch as a partition grows

What sets the floor on the embedded broker (Tansu 0.6.0, docs/performance.md): the consumer's
``fetch.wait.max.ms`` (0: Tansu answers no fetch with data; 1: fetches stall for seconds; 2,
the job's: fine), and the number of record batches in the partition, which every fetch that
finds data lists: a producer without linger (one record batch a message) makes it grow fastest.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _sent_us(headers: list[tuple[str, bytes]] | None, name: str) -> int:
    for key, value in headers or ():
        if key == name:
            return int(value)
    return 0


def floor_rate(bootstrap: str, rate: float, seconds: float, *, batch_size: int = 20_000,
               linger_ms: int = 2, consumer: dict[str, Any] | None = None,
               producer: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None,
               split: str | None = None) -> dict[str, Any]:
    """Offer ``rate`` ticks/s for ``seconds`` to a bare consumer that answers each batch
    with one message; the job's percentiles' keys (p50, p99, p99.9 ms), lag and batches.
    ``consumer`` / ``producer``: librdkafka settings over the job's, ``upstream`` over the
    tick producer's (to find the floor's own causes); ``split``: an .npz path for the
    producer's record, to split each tick's latency (``split_lines``)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from live_producer import producer_main  # beside this file

    from tickflow.connectors.kafka_client import client_settings, ensure_topic
    from tickflow.connectors.kafka_sink import KafkaSinkConfig, producer_settings
    from tickflow.connectors.kafka_source_config import KafkaSourceConfig, consumer_settings
    from tickflow.connectors.kafka_topics import SENT_HEADER
    from tickflow.engine.latency import LatencyHistogram

    topic = f"floor-{int(rate)}-{int(time.time() * 1000) % 10**8}"
    signals = f"{topic}-signals"
    admin = client_settings(bootstrap)
    ensure_topic(admin, topic, 1)
    ensure_topic(admin, signals, 1)
    source = KafkaSourceConfig(topic=topic, batch_size=batch_size, linger_ms=linger_ms,
                               consumer=consumer or {})
    sink = KafkaSinkConfig(topic=signals, linger_ms=0, producer=producer or {})
    c = Consumer(client_settings(bootstrap, **consumer_settings(source, f"{topic}-floor")))
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    p = Producer(client_settings(bootstrap, **producer_settings(sink)))
    ctx = mp.get_context("spawn")
    produced, ready = ctx.Value("q", 0), ctx.Event()
    proc = ctx.Process(target=producer_main, args=(bootstrap, topic, rate, seconds, 200_000,
                                                   produced, ready, split, upstream))
    c.consume(1, timeout=0.5)  # connected and fetching before the first tick is sent
    proc.start()
    if not ready.wait(120):
        raise RuntimeError("the producer did not start within 120 s")
    hist = LatencyHistogram()
    n = batches = 0
    lags: list[tuple[float, int]] = []
    polled: list[tuple[np.ndarray, int, int]] = []  # (send stamps, polled µs, done µs)
    wait = max(linger_ms / 1000, 0.001)
    start = time.perf_counter()
    first = None  # the histogram after the first second (``steady p99``: the rest)
    while True:
        if first is None and time.perf_counter() - start >= 1 and hasattr(hist, "copy"):
            first = hist.copy()  # (a tree before LatencyHistogram.copy: no steady p99)
        messages = c.consume(batch_size, timeout=0)
        if not messages:
            messages = c.consume(1, timeout=wait)
            if messages and batch_size > 1:
                messages.extend(c.consume(batch_size - 1, timeout=0))
        good = [m for m in messages if m.error() is None]
        if good:
            taken = time.time_ns() // 1000
            sent = np.array([_sent_us(m.headers(), SENT_HEADER) for m in good], dtype=np.int64)
            p.produce(signals, value=str(len(good)).encode(), key=b"floor")
            p.poll(0)
            done = time.time_ns() // 1000
            hist.add(done - sent)
            if split:
                polled.append((sent, taken, done))
            n += len(good)
            batches += 1
        if proc.is_alive():
            lags.append((time.perf_counter(), produced.value - n))
        elif proc.exitcode != 0 or n >= produced.value > 0:
            break
        if time.perf_counter() - start > seconds + 120:
            break
    proc.join()
    p.flush(10)
    c.close()
    t0 = lags[0][0] if lags else start
    steady = [lag for t, lag in lags if seconds * 0.2 <= t - t0 <= seconds * 0.95]
    third = max(1, len(steady) // 3)
    pct = {name: hist.percentile_us(q) / 1000 for name, q in
           (("p50", 50), ("p99", 99), ("p99.9", 99.9))}
    if first is not None:
        pct["steady p99"] = hist.since(first).percentile_us(99) / 1000
    if split:
        with np.load(split) as z:
            pct["split"] = split_lines(polled, np.asarray(z["ack_ms"]))
    return {"offered": rate, "ticks": n, "batches": batches,
            "lag_first_third": float(np.mean(steady[:third])) if steady else float("nan"),
            "lag_last_third": float(np.mean(steady[-third:])) if steady else float("nan"),
            **pct}


def split_lines(polled: list[tuple[np.ndarray, int, int]], ack_ms: np.ndarray) -> list[str]:
    """Each tick's floor latency in three: until the broker acknowledged it to the tick
    producer (its linger, the broker's append), then until the consumer took it (the fetch:
    fetch.wait.max.ms, the broker's long poll, the consumer's queue), then the signal's
    produce call. Delivery reports and offsets come in the same order (one partition)."""
    if not polled:
        return ["  (split skipped: no tick arrived)"]
    sent = np.concatenate([s for s, _, _ in polled])
    taken = np.concatenate([np.full(s.size, t) for s, t, _ in polled])
    done = np.concatenate([np.full(s.size, d) for s, _, d in polled])
    if sent.size != ack_ms.size:
        return [f"  (split skipped: {sent.size} ticks, {ack_ms.size} delivery reports)"]
    parts = {"acknowledged": ack_ms, "taken": (taken - sent) / 1e3 - ack_ms,
             "produce": (done - taken) / 1e3}
    total = (done - sent) / 1e3
    tail = total >= np.percentile(total, 99)
    return [f"  {name:<12} p50 {np.median(v):6.2f} p99 {np.percentile(v, 99):6.2f}; mean over "
            f"the slowest 1% {v[tail].mean():6.2f} ms" for name, v in parts.items()]


def broker_probe(bootstrap: str, sizes: list[int], ticks: int = 40) -> list[str]:
    """One tick at a time on a quiet partition: how long after the broker acknowledged it
    the consumer (the job's fetch settings) has it, once the partition holds each of
    ``sizes`` record batches (each produced and acknowledged alone, as a producer without
    linger writes them). Tansu's memory storage lists every record batch of the partition on
    each fetch that finds data, so this grows with the partition."""
    import random

    from confluent_kafka import Consumer, Producer, TopicPartition

    from tickflow.connectors.kafka_client import client_settings, ensure_topic
    from tickflow.connectors.kafka_source_config import KafkaSourceConfig, consumer_settings

    topic = f"probe-{int(time.time() * 1000) % 10**8}"
    ensure_topic(client_settings(bootstrap), topic, 1)
    p = Producer(client_settings(bootstrap, **{"linger.ms": 0}))
    c = Consumer(client_settings(bootstrap, **consumer_settings(
        KafkaSourceConfig(topic=topic, linger_ms=2), f"{topic}-probe")))
    c.assign([TopicPartition(topic, 0, 0)])
    batches, out = 0, []
    for size in sizes:
        for _ in range(size - batches):
            p.produce(topic, b"x")
            p.flush(10)
        batches = max(batches, size)
        c.assign([TopicPartition(topic, 0, batches)])
        after = []
        for _ in range(ticks):
            time.sleep(random.uniform(0.002, 0.01))
            p.produce(topic, b"y")
            p.flush(10)
            acked = time.perf_counter()
            while not c.consume(1, timeout=1):
                pass
            after.append((time.perf_counter() - acked) * 1e3)
        batches += ticks
        a = np.array(after)
        out.append(f"  {size:>6,} record batches: taken after the acknowledgement p50 "
                   f"{np.median(a):.2f} p90 {np.percentile(a, 90):.2f} max {a.max():.2f} ms")
    c.close()
    return out


def main() -> None:
    import argparse
    import os
    import tempfile

    from tickflow.connectors.embedded_broker import EmbeddedBroker

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=1, help="runs on the same broker")
    ap.add_argument("--linger-ms", type=int, default=2, help="the source's linger_ms")
    ap.add_argument("--consumer", action="append", default=[],
                    help="librdkafka consumer setting KEY=VALUE over the job's (repeatable)")
    ap.add_argument("--producer", action="append", default=[],
                    help="librdkafka producer setting KEY=VALUE over the sink's (repeatable)")
    ap.add_argument("--upstream", action="append", default=[],
                    help="librdkafka setting KEY=VALUE over the tick producer's (repeatable)")
    ap.add_argument("--split", action="store_true",
                    help="split each tick's latency: acknowledged, taken, produce")
    ap.add_argument("--probe", default=None,
                    help="instead: one tick at a time after N record batches, e.g. 0,2000,5000")
    args = ap.parse_args()
    consumer = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.consumer)}
    producer = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.producer)}
    upstream = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.upstream)}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        if args.probe:
            print(f"# the broker's fetch, one tick at a time; load {os.getloadavg()[0]:.1f}")
            print("\n".join(broker_probe(broker.bootstrap,
                                         [int(n) for n in args.probe.split(",")])))
            return
        for run in range(args.runs):
            r = floor_rate(broker.bootstrap, args.rate, args.seconds, linger_ms=args.linger_ms,
                           consumer=consumer, producer=producer, upstream=upstream,
                           split=f"{tmp}/split-{run}.npz" if args.split else None)
            print(f"floor at {args.rate:,.0f}/s {consumer} {producer} {upstream}: "
                  f"{r['ticks']:,} ticks in "
                  f"{r['batches']:,} batches, lag {r['lag_first_third']:,.0f} -> "
                  f"{r['lag_last_third']:,.0f}; p50 {r['p50']:.2f} p99 {r['p99']:.2f} "
                  f"p99.9 {r['p99.9']:.2f} ms; load {os.getloadavg()[0]:.1f}", flush=True)
            print("\n".join(r.get("split", [])), flush=True)


def _value(text: str) -> Any:
    """A KEY=VALUE setting's value: an int when it is one (librdkafka takes strings too)."""
    try:
        return int(text)
    except ValueError:
        return text


if __name__ == "__main__":
    main()
