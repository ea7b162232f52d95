"""Live path benchmark: Kafka ticks -> core features + signals, on the embedded broker.

A producer *process* replays simulated ticks into the ticks topic at a fixed offered rate and
stamps each message with its send time (header ``tickflow-sent-us``); the live job (the
``LiveRunner`` of ``run-job``: decode, quality checks, the 34 core feature steps, 3 signal
rules, a Kafka signals sink, offsets committed after every flushed batch) consumes it in this
process. For each offered rate it reports the consumed rate, whether the lag grew, and the
tick-to-signal latency (send -> features and signals computed, written and flushed), beside
the floor: the same producer and a bare consumer with the job's settings that produces one
message per batch and nothing else (bench/live_floor.py), latency measured the same way.
Sustained throughput is measured by draining a pre-filled topic (the job's max rate);
``--formats json,arrow,avro`` drains one topic per message format, the job's source reading
it with that ``format:`` (bench/live_formats.py).

The seed's approach runs side by side as the peer: one ``json.loads`` per message and the
z-score/RSI updated tick by tick in Python, on the same broker and data.

Then the scale-out figure, 1 against 2 member processes (``group:``) draining a pre-filled
4-partition topic (bench/live_members.py), and the live view's cost, the same replay piped and
on a pseudo-terminal (bench/view.py).

    python bench/live.py                       # 20K and 100K ticks/s offered, 10 s each
    python bench/live.py --rates 20000 --seconds 5 --drain-ticks 500000
    python bench/live.py --only drain,rates --drain-ticks 300000 --seconds 5   # the live path
    python bench/live.py --rates 20000,100000 --seconds 5 --only latency        # floor vs job
    python bench/live.py --only drain --drain-ticks 300000 --formats json,arrow,avro
    python bench/live.py --only latency --rates 20000 --seconds 5 --job jobs/live.yaml
    python bench/live.py --only latency --rates 20000 --seconds 5 --state rocksdb:200ms
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_formats import encoded, fill_messages, parse_formats, registry_for, source_lines  # noqa: E402  (beside this file)
from live_producer import producer_main, ticks_values  # noqa: E402  (beside this file)
from live_stages import StageClock  # noqa: E402  (beside this file)

from tickflow.connectors.embedded_broker import EmbeddedBroker  # noqa: E402
from tickflow.connectors.kafka_client import client_settings, ensure_topic  # noqa: E402
from tickflow.connectors.replay import produce_retrying  # noqa: E402

JOB = """
name: bench-live
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    group_id: {topic}-job
    batch_size: {batch_size}
    linger_ms: {linger_ms}
    dead_letter_path: {tmp}/dead.jsonl
{source_format}include: [{root}/jobs/features/core.yaml]
signals:
  buy: zscore < -2.0 and rsi < 30
  sell: zscore > 2.0 and rsi > 70
  regime_change: cusum_alarm == 1
sinks:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}-signals
    columns: [timestamp, symbol, price, zscore, rsi, cusum_stat, buy, sell, regime_change]
    only_rows_with: [buy, sell, regime_change]
executor: {{workers: 1}}
"""


def run_job(bootstrap: str, topic: str, tmp: str, until: callable, linger_ms: int = 2,
            on_open: callable | None = None, batch_size: int = 20_000,
            source_format: str = "", parquet: bool = False, job: str | None = None,
            ) -> tuple[object, list[tuple[float, int, float]]]:
    """Run the live job until ``until(runner)``; returns its summary and samples of (time,
    ticks processed, this process's CPU seconds: the job and its librdkafka threads).
    ``source_format``: extra source lines (``format:``), none for JSON; ``parquet``: a
    Parquet sink of every feature too (its writer thread shares the GIL with the driver);
    ``job``: a job YAML to run instead (e.g. the shipped jobs/live.yaml), its broker, topics
    and output folder given through its ``${KAFKA_BOOTSTRAP}``, ``${TICKS_TOPIC}``,
    ``${SIGNALS_TOPIC}`` and ``${OUT_DIR}``."""
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors.live import LiveRunner
    from tickflow.engine.loader import load_job

    path = Path(tmp) / f"{topic}.yaml"
    if job is not None:
        os.environ.update(KAFKA_BOOTSTRAP=bootstrap, TICKS_TOPIC=topic,
                          SIGNALS_TOPIC=f"{topic}-signals", OUT_DIR=f"{tmp}/{topic}-out")
        path = Path(job)
    else:
        sink = f"  - {{kind: parquet, path: {tmp}/{topic}.parquet}}\nexecutor:"
        path.write_text(JOB.format(bootstrap=bootstrap, topic=topic, tmp=tmp, root=ROOT,
                                   linger_ms=linger_ms, batch_size=batch_size,
                                   source_format=source_format)
                        .replace("executor:", sink if parquet else "executor:"))
    stop = threading.Event()
    runner = LiveRunner(compile_job(load_job(path)), stop=stop, on_open=on_open)
    samples: list[tuple[float, int, float]] = []

    def watch() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), runner.summary.ticks, time.process_time()))
            if until(runner):
                stop.set()
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    summary = runner.run()
    return summary, samples


def offered_rate(broker: EmbeddedBroker, rate: float, seconds: float, tmp: str,
                 job: str | None = None, state: str | None = None) -> dict:
    """One offered rate through the job; its percentiles over the whole run and over the run
    after its first second (``steady p99``: the start, where each symbol's state is first
    made, apart). ``state``: BACKEND:EVERY (e.g. rocksdb:200ms), a checkpointed job."""
    topic = f"bench-{int(rate)}-{int(time.time() * 1000) % 10**8}"
    extra = ""
    if state:  # a top-level block after the source's lines
        backend, every = state.split(":")
        extra = (f"state: {{backend: {backend}, path: {tmp}/state-{topic}, "
                 f"checkpoint: {{every: {every}}}}}\n")
    ensure_topic(client_settings(broker.bootstrap), topic, 1)
    ctx = mp.get_context("spawn")
    produced, ready = ctx.Value("q", 0), ctx.Event()
    proc = ctx.Process(
        target=producer_main, args=(broker.bootstrap, topic, rate, seconds, 200_000, produced,
                                    ready))
    lags: list[tuple[float, int]] = []
    marks: dict = {}

    def start_producer(source: object) -> None:  # once the job is consuming
        proc.start()
        if not ready.wait(120):
            print("producer did not start within 120 s", file=sys.stderr)
        marks["ready"] = time.perf_counter()

    def until(runner: object) -> bool:
        consumed = runner.summary.messages  # type: ignore[attr-defined]
        if "first" not in marks and time.perf_counter() - marks.get("ready", np.inf) >= 1 \
                and hasattr(runner.summary.latency, "copy"):  # type: ignore[attr-defined]
            marks["first"] = runner.summary.latency.copy()  # type: ignore[attr-defined]
        if proc.is_alive():
            lags.append((time.perf_counter(), produced.value - consumed))
        if proc.exitcode not in (None, 0):  # the producer failed: end, report what ran
            return True
        return proc.exitcode is not None and consumed >= produced.value > 0

    with StageClock() as clock:
        summary, _ = run_job(broker.bootstrap, topic, tmp, until, on_open=start_producer,
                             job=job, source_format=extra)
    proc.join()
    t0 = lags[0][0]
    steady = [lag for t, lag in lags if seconds * 0.2 <= t - t0 <= seconds * 0.95]
    third = max(1, len(steady) // 3)
    pct = summary.latency_percentiles_ms()
    if "first" in marks and hasattr(summary.latency, "since"):  # (a tree before it: none)
        pct["steady p99"] = summary.latency.since(marks["first"]).percentile_us(99) / 1000
    return {"offered": rate, "ticks": summary.ticks, "seconds": summary.seconds,
            "lag_first_third": float(np.mean(steady[:third])) if steady else float("nan"),
            "lag_last_third": float(np.mean(steady[-third:])) if steady else float("nan"),
            "stages": clock.table(summary.ticks, summary.seconds),
            "dropped": sum(summary.quality_counts.values()), **pct}


def drain(broker: EmbeddedBroker, ticks: int, tmp: str, fmt: str = "json",
          registry: str | None = None, arrow_rows: int = 5_000) -> dict:
    """Pre-fill a topic in ``fmt``, then time the job reading it all (its sustained maximum).
    A job batch holds about 20,000 ticks in every format (fewer messages with Arrow)."""
    from confluent_kafka import Producer

    topic = "bench-drain" if fmt == "json" else f"bench-drain-{fmt}"
    settings = client_settings(broker.bootstrap)
    ensure_topic(settings, topic, 1)
    if fmt == "json":
        pairs = ticks_values(min(ticks, 1_000_000))
        messages = [pairs[i % len(pairs)] for i in range(ticks)]
    else:
        pairs, counts = encoded(fmt, topic, min(ticks, 1_000_000), arrow_rows, registry)
        messages, ticks = fill_messages(pairs, counts, ticks)
    per_message = ticks / len(messages)
    batch_size = max(1, round(20_000 / per_message))
    p = Producer(client_settings(broker.bootstrap, **{"linger.ms": 5,
                                                      "batch.num.messages": 10_000,
                                                      "queue.buffering.max.messages":
                                                          2_000_000}))
    for key, value in messages:
        produce_retrying(p, topic, value, key)
    p.flush()
    with StageClock() as clock:
        summary, samples = run_job(broker.bootstrap, topic, tmp,
                                   lambda r: r.summary.ticks >= ticks, linger_ms=20,
                                   batch_size=batch_size,
                                   source_format=source_lines(fmt, registry))
    # from the first consumed batch to the last: excludes start-up (numba cache loading)
    started = next(s for s in samples if s[1] > 0)
    ended = next(s for s in samples if s[1] >= ticks)
    drained = ticks - started[1]
    return {"ticks": summary.ticks, "messages": len(messages), "per_message": per_message,
            "signals": sum(summary.signal_counts.values()),
            "batch_size": batch_size, "bytes_per_tick": sum(len(v) for _, v in messages) / ticks,
            "ticks_per_s": drained / max(ended[0] - started[0], 1e-9),
            "cpu_us_per_tick": 1e6 * (ended[2] - started[2]) / max(drained, 1),
            "stages": clock.table(summary.ticks, summary.seconds)}


def bare_consumer(broker: EmbeddedBroker, ticks: int) -> float:
    """Messages/s a consumer that does nothing else reads from the drain's topic, with the
    live source's fetch settings: the broker's ceiling for the job on this machine."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(client_settings(broker.bootstrap, **{
        "group.id": "bare", "enable.auto.commit": False, "fetch.wait.max.ms": 2,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20,
        "queued.min.messages": 100_000, "isolation.level": "read_committed"}))
    c.assign([TopicPartition("bench-drain", 0, OFFSET_BEGINNING)])
    n = 0
    start = time.perf_counter()
    while n < ticks:
        n += sum(1 for m in c.consume(20_000, timeout=0.5) if m.error() is None)
    seconds = time.perf_counter() - start
    c.close()
    return n / seconds


def seed_peer(broker: EmbeddedBroker, ticks: int) -> dict:
    """The seed's consumer: json.loads per message, z-score and RSI per tick in Python."""
    import json
    from collections import defaultdict, deque

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(client_settings(broker.bootstrap, **{
        "group.id": "seed-peer", "enable.auto.commit": False, "fetch.wait.max.ms": 20,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20}))
    c.assign([TopicPartition("bench-drain", 0, OFFSET_BEGINNING)])
    windows: dict[str, deque] = defaultdict(lambda: deque(maxlen=100))
    gains: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, float("nan")])
    n = signals = 0
    start = time.perf_counter()
    while n < ticks:
        for m in c.consume(20_000, timeout=0.5):
            if m.error():
                continue
            tick = json.loads(m.value())
            sym, price = tick["symbol"], float(tick["price"])
            w = windows[sym]
            w.append(price)
            mean = sum(w) / len(w)
            sd = (sum((x - mean) ** 2 for x in w) / len(w)) ** 0.5
            z = (price - mean) / sd if sd > 0 else 0.0
            g = gains[sym]
            if g[2] == g[2]:
                change = price - g[2]
                g[0] = g[0] * 13 / 14 + max(change, 0) / 14
                g[1] = g[1] * 13 / 14 + max(-change, 0) / 14
            g[2] = price
            rsi = 100 - 100 / (1 + g[0] / g[1]) if g[1] > 0 else 100.0
            signals += (z < -2 and rsi < 30) or (z > 2 and rsi > 70)
            n += 1
    seconds = time.perf_counter() - start
    c.close()
    return {"ticks": n, "ticks_per_s": n / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="20000,100000", help="offered rates, ticks/s")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per offered rate")
    ap.add_argument("--drain-ticks", type=int, default=1_000_000,
                    help="pre-filled ticks for the sustained-throughput run")
    ap.add_argument("--formats", default="json",
                    help="message formats drained, comma-separated: json,arrow,avro (Avro "
                         "against the tests' loopback Schema Registry)")
    ap.add_argument("--arrow-rows", type=int, default=5_000,
                    help="rows a sink hands the Arrow encoder at once (a message holds one "
                         "symbol's rows of them)")
    ap.add_argument("--members-ticks", type=int, default=400_000,
                    help="pre-filled ticks (4 partitions) for 1 against 2 member processes")
    ap.add_argument("--view-ticks", type=int, default=100_000,
                    help="ticks replayed piped and on a pseudo-terminal")
    ap.add_argument("--view-repeat", type=int, default=3, help="runs of each view mode")
    ap.add_argument("--only", default="drain,peer,rates,members,view",
                    help="parts to run, comma-separated (e.g. drain,rates); latency = rates: "
                         "each offered rate's floor (bench/live_floor.py), then the job")
    ap.add_argument("--job", default=None,
                    help="the latency rows run this job YAML instead of the benchmark's (e.g. "
                         "jobs/live.yaml: a Parquet sink of every tick too, linger_ms 5)")
    ap.add_argument("--state", default=None,
                    help="the latency rows' job checkpoints: BACKEND:EVERY, e.g. rocksdb:200ms")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    nan = float("nan")
    print(f"# bench/live.py on {os.cpu_count()} cores; broker, producer and job share them")
    formats = parse_formats(args.formats)
    stages: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker, \
            registry_for(formats if "drain" in parts else []) as registry:
        if "drain" in parts:
            stages += drains(broker, args.drain_ticks, tmp, formats, registry, args.arrow_rows)
        if "drain" in parts and "json" in formats:  # reads the JSON drain's topic
            print(f"  a bare consumer (reads, nothing else): "
                  f"{bare_consumer(broker, args.drain_ticks):,.0f} messages/s")
        if "peer" in parts and "drain" in parts and "json" in formats:
            peer = seed_peer(broker, min(args.drain_ticks, 300_000))
            print(f"  peer, the seed's per-message json.loads + Python z-score/RSI: "
                  f"{peer['ticks_per_s']:,.0f} ticks/s")
        if parts & {"rates", "latency"}:
            from live_floor import floor_rate  # beside this file

            print("| offered ticks/s | run | consumed | lag 1st third | lag last third | "
                  "p50 ms | p99 ms | p99.9 ms | p99 after the first second |")
            print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
            for rate in (float(r) for r in args.rates.split(",")):
                # the floor: the same producer and consumer settings, no tickflow processing
                for run, r in (("floor", floor_rate(broker.bootstrap, rate, args.seconds)),
                               ("tickflow job", offered_rate(broker, rate, args.seconds,
                                                             tmp, args.job, args.state))):
                    print(f"| {rate:,.0f} | {run} | {r['ticks']:,} | "
                          f"{r['lag_first_third']:,.0f} | {r['lag_last_third']:,.0f} | "
                          f"{r.get('p50', nan):.2f} | {r.get('p99', nan):.2f} | "
                          f"{r.get('p99.9', nan):.2f} | {r.get('steady p99', nan):.2f} |",
                          flush=True)
                stages += ["", f"where the time goes at {rate:,.0f} ticks/s offered "
                               f"({r['dropped']:,} ticks dropped by the quality stage):",
                           *r["stages"]]
        print()
        print("\n".join(stages), flush=True)
        if "members" in parts:
            scale_out(broker, args.members_ticks, tmp)
    if "view" in parts:
        print()
        from bench.view import measure

        print("\n".join(measure(args.view_ticks, repeat=args.view_repeat)))


def drains(broker: EmbeddedBroker, ticks: int, tmp: str, formats: list[str],
           registry: str | None, arrow_rows: int) -> list[str]:
    """Drain a pre-filled topic per format; print the rate(s), return the stage tables.
    JSON alone prints the one line it always has; several formats print a row each."""
    stages: list[str] = []
    if formats != ["json"]:
        print(f"sustained (drain {ticks:,} pre-filled ticks), by message format:")
        print("| format | messages | ticks a message | bytes a tick | job batch, messages | "
              "signals | ticks/s | CPU µs a tick |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for fmt in formats:
        r = drain(broker, ticks, tmp, fmt, registry, arrow_rows)
        if formats == ["json"]:
            print(f"sustained (drain {ticks:,} pre-filled ticks): "
                  f"tickflow live job {r['ticks_per_s']:,.0f} ticks/s, "
                  f"{r['cpu_us_per_tick']:.2f} µs of its process's CPU a tick")
        else:
            print(f"| {fmt} | {r['messages']:,} | {r['per_message']:,.1f} | "
                  f"{r['bytes_per_tick']:.1f} | {r['batch_size']:,} | {r['signals']:,} | "
                  f"{r['ticks_per_s']:,.0f} | "
                  f"{r['cpu_us_per_tick']:.2f} |", flush=True)
        label = "" if formats == ["json"] else f" ({fmt})"
        stages += [*([""] if stages else []),
                   f"where the drain's time goes{label} (the job's {r['ticks']:,} ticks):",
                   *r["stages"]]
    return stages


def scale_out(broker: EmbeddedBroker, ticks: int, tmp: str) -> None:
    """1 against 2 member processes draining the same pre-filled 4-partition topic."""
    from bench.live_members import fill, members_drain

    pairs = ticks_values(min(ticks, 1_000_000))
    print()
    print(f"| member processes (4-partition topic, {ticks:,} ticks, rocksdb checkpoint "
          f"after each batch) | drained ticks/s |")
    print("|---:|---:|")
    for members in (1, 2):
        topic = f"bench-members-{members}"
        fill(broker.bootstrap, topic, pairs, ticks)
        r = members_drain(broker.bootstrap, topic, ticks, members, tmp)
        note = f" ({r['error'].strip().splitlines()[-1]})" if "error" in r else ""
        print(f"| {members} | {r['ticks_per_s']:,.0f}{note} |", flush=True)


if __name__ == "__main__":
    main()
