"""The live job's CPU a small batch, stage by stage: what a tick waits for beyond the floor.

At 20K ticks/s offered a live batch holds about 100 ticks, so the job's fixed cost a batch
(kernel steps, the sink's encoding, Arrow calls) is what the next ticks wait for. This drains a
pre-filled topic through the same job as bench/live.py with ``batch_size`` small, and prints the
CPU of the job's driver thread a batch (steady whatever else loads the machine), the
``live_stages`` table and the garbage collections during the run.

    python bench/live_batch_cpu.py --ticks 40000 --batch 100
    python bench/live_batch_cpu.py --ticks 40000 --batch 100 --profile   # cProfile, top 40
    python bench/live_batch_cpu.py --ticks 300000 --batch 20000 --bare   # the drain's account

It also prints the CPU a tick of the job's whole process (the driver thread and librdkafka's
threads) and of the broker's process, and with ``--bare`` the same for a bare consumer that
reads the topic again with the source's consumer settings and does nothing else: what a tick
of the drain costs the client library and the broker (not tickflow's) beside what is ours.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def broker_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) the broker has used so far: the process ``pid`` (the
    watcher shell) and its descendants (Tansu); 0 when unknown."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, IndexError):
        return total
    return total + sum(broker_cpu(int(c)) for c in children)


def bare_read(bootstrap: str, topic: str, ticks: int, batch: int,
              pid: int | None) -> tuple[float, float, float]:
    """A consumer with the source's settings reads ``ticks`` messages and nothing else:
    (wall, its process's CPU, the broker's CPU) in seconds."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tickflow.connectors.kafka_client import client_settings
    from tickflow.connectors.kafka_source_config import KafkaSourceConfig, consumer_settings

    cfg = KafkaSourceConfig(kind="kafka", topic=topic, batch_size=batch)
    c = Consumer(client_settings(bootstrap, **consumer_settings(cfg, "bare-account")))
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    n = 0
    wall, cpu, brk = time.perf_counter(), time.process_time(), broker_cpu(pid)
    while n < ticks:
        n += len(c.consume(batch, timeout=0.5))
    out = (time.perf_counter() - wall, time.process_time() - cpu, broker_cpu(pid) - brk)
    c.close()
    return out


def main() -> None:
    import cProfile
    import pstats

    from confluent_kafka import Producer
    from live import run_job
    from live_producer import ticks_values
    from live_stages import StageClock

    from tickflow.connectors.embedded_broker import EmbeddedBroker
    from tickflow.connectors.kafka_client import client_settings, ensure_topic
    from tickflow.connectors.replay import produce_retrying

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ticks", type=int, default=40_000)
    ap.add_argument("--batch", type=int, default=100, help="the source's batch_size")
    ap.add_argument("--profile", action="store_true", help="cProfile the driver's thread")
    ap.add_argument("--first", type=int, default=8,
                    help="print the driver's CPU for each of the first N batches (the start: "
                         "each symbol's state made, its windows widened)")
    ap.add_argument("--bare", action="store_true",
                    help="then a bare consumer reads the topic again (the client's and "
                         "broker's share)")
    args = ap.parse_args()
    gcs: dict[int, list[float]] = defaultdict(list)
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            gcs[info["generation"]].append(time.perf_counter() - started[0])

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        topic = "batch-cpu"
        ensure_topic(client_settings(broker.bootstrap), topic, 1)
        p = Producer(client_settings(broker.bootstrap, **{"linger.ms": 5}))
        for key, value in ticks_values(args.ticks)[:args.ticks]:
            produce_retrying(p, topic, value, key)
        p.flush()
        marks: dict = {}
        # the driver thread's CPU, not wall time (which counts the waits for a core as well)
        profile = cProfile.Profile(time.thread_time) if args.profile else None

        def on_open(source: object) -> None:  # on the driver's thread, kernels loaded
            gc.callbacks.append(on_gc)
            marks["thread"], marks["wall"] = time.thread_time(), time.perf_counter()
            marks["process"], marks["broker"] = time.process_time(), broker_cpu(broker.pid)
            if profile is not None:
                profile.enable()

        from tickflow.engine.executors.live_hooks import LiveObserver

        ends: list[float] = []  # the driver thread's CPU at each batch's end (its observer)
        write = LiveObserver.write

        def observed(observer: object, batch: object) -> None:
            write(observer, batch)  # type: ignore[arg-type]
            ends.append(time.thread_time())

        LiveObserver.write = observed  # type: ignore[method-assign]
        with StageClock() as clock:
            summary, _ = run_job(broker.bootstrap, topic, tmp,
                                 lambda r: r.summary.ticks >= args.ticks, on_open=on_open,
                                 batch_size=args.batch)
        if profile is not None:
            profile.disable()
        LiveObserver.write = write  # type: ignore[method-assign]
        gc.callbacks.remove(on_gc)
        each = np.diff([marks["thread"], *ends]) * 1e3
        thread = time.thread_time() - marks["thread"]
        process = time.process_time() - marks["process"]
        brk = broker_cpu(broker.pid) - marks["broker"]
        batches = summary.ticks / args.batch
        print(f"# {summary.ticks:,} ticks in batches of {args.batch}; driver thread "
              f"{1e3 * thread / batches:.3f} ms CPU a batch; wall "
              f"{time.perf_counter() - marks['wall']:.2f} s; load {os.getloadavg()[0]:.1f}")
        if each.size > args.first:
            print(f"driver CPU of the first {args.first} batches, ms: "
                  + " ".join(f"{x:.2f}" for x in each[:args.first])
                  + f" (sum {each[:args.first].sum():.1f}); the rest: median "
                  f"{np.median(each[args.first:]):.2f}")
        per = 1e6 / summary.ticks
        print(f"per tick: wall {per * summary.seconds:.2f} µs (the job's run), CPU µs: driver "
              f"thread {per * thread:.2f}, other threads of the job's process (librdkafka) "
              f"{per * (process - thread):.2f}, broker process {per * brk:.2f}")
        if args.bare:
            wall, cpu, bcpu = bare_read(broker.bootstrap, topic, summary.ticks, args.batch,
                                        broker.pid)
            print(f"bare consumer, the same topic and settings: wall {per * wall:.2f} µs a "
                  f"message, CPU µs: its process {per * cpu:.2f}, broker process "
                  f"{per * bcpu:.2f}; load {os.getloadavg()[0]:.1f}")
        print("gc passes (generation: count, ms in all, max ms): " + ", ".join(
            f"{g}: {len(v)}, {1e3 * sum(v):.1f}, {1e3 * max(v):.2f}"
            for g, v in sorted(gcs.items())) or "none")
        print("\n".join(clock.table(summary.ticks, summary.seconds)))
        if profile is not None:
            order, top = os.environ.get("SORT", "tottime"), int(os.environ.get("TOP", "40"))
            pstats.Stats(profile).sort_stats(order).print_stats(top)


if __name__ == "__main__":
    main()
