"""The live job's CPU a small batch, stage by stage: what a tick waits for beyond the floor.

At 20K ticks/s offered a live batch holds about 100 ticks, so the job's fixed cost a batch
(kernel steps, the sink's encoding, Arrow calls) is what the next ticks wait for. This drains a
pre-filled topic through the same job as bench/live.py with ``batch_size`` small, and prints the
CPU of the job's driver thread a batch (steady whatever else loads the machine), the
``live_stages`` table and the garbage collections during the run.

    python bench/live_batch_cpu.py --ticks 40000 --batch 100
    python bench/live_batch_cpu.py --ticks 40000 --batch 100 --profile   # cProfile, top 40
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


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
        profile = cProfile.Profile() if args.profile else None

        def on_open(source: object) -> None:  # on the driver's thread, kernels loaded
            gc.callbacks.append(on_gc)
            marks["thread"], marks["wall"] = time.thread_time(), time.perf_counter()
            if profile is not None:
                profile.enable()

        with StageClock() as clock:
            summary, _ = run_job(broker.bootstrap, topic, tmp,
                                 lambda r: r.summary.ticks >= args.ticks, on_open=on_open,
                                 batch_size=args.batch)
        if profile is not None:
            profile.disable()
        gc.callbacks.remove(on_gc)
        thread = time.thread_time() - marks["thread"]
        batches = summary.ticks / args.batch
        print(f"# {summary.ticks:,} ticks in batches of {args.batch}; driver thread "
              f"{1e3 * thread / batches:.3f} ms CPU a batch; wall "
              f"{time.perf_counter() - marks['wall']:.2f} s; load {os.getloadavg()[0]:.1f}")
        print("gc passes (generation: count, ms in all, max ms): " + ", ".join(
            f"{g}: {len(v)}, {1e3 * sum(v):.1f}, {1e3 * max(v):.2f}"
            for g, v in sorted(gcs.items())) or "none")
        print("\n".join(clock.table(summary.ticks, summary.seconds)))
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
