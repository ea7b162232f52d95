"""A live job's per-batch timeline, to find what sets tick-to-signal p99 (issue #20).

``with Timeline() as tl: run the job`` records, on the driver's thread, when each stage of each
batch began and ended (poll, decode, quality, kernels, rules, produce, observe, commits,
checkpoints), every garbage collection (``gc.callbacks``: generation, pause) and each batch's
tick-to-signal latencies, by wrapping the same calls as ``live_stages.StageClock``; nothing in
tickflow changes. ``tl.report(producer)`` prints where the slowest batches' ticks spent their
time: waiting before the job took them (transport, or the job busy with the batch before),
each stage, GC inside the batch, and the producer's own lateness behind its schedule. The
latency split (``live_producer.tail_lines``) joins every tick to the broker's acknowledgement
and says, for the p50, the p99 and the slowest 1%: acknowledged, the job busy with earlier
batches, the fetch, the decode, and its own batch by stage, its thread's CPU and the time it
was off the CPU; then the CPU of each of the job's threads (librdkafka's ``rdk:*`` included).

    python bench/live_timeline.py --rate 20000 --seconds 5            # one offered rate
    python bench/live_timeline.py --rate 20000 --consumer fetch.wait.max.ms=5 --gc-freeze-each
"""

from __future__ import annotations

import gc
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

STAGES = ["poll", "decode", "quality", "kernels", "rules", "process", "produce", "observe",
          "commit", "commit_call", "sink_flush", "checkpoint"]


class Timeline:
    """Stage intervals and GC pauses of the driver's thread, batch by batch."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, float]] = []  # (stage, start, end), driver thread
        self.gcs: list[tuple[int, float, float, int, str]] = []  # gen, start, end, collected
        self.batches: list[dict[str, Any]] = []  # one per poll that returned a batch
        self._undo: list[tuple[Any, str, Any]] = []
        self._gc_start = 0.0
        self._thread: int | None = None

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        events = self.events

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                events.append((stage, start, time.perf_counter()))

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gcs.append((info["generation"], self._gc_start, time.perf_counter(),
                             info.get("collected", 0), threading.current_thread().name))

    def __enter__(self) -> Timeline:
        from live_stages import stage_methods  # beside this file

        import tickflow.connectors.kafka_source as kafka_source
        from tickflow.engine.executors.live_hooks import LiveObserver
        from tickflow.engine.state.recovery import Checkpointer

        for owner, attr, stage in stage_methods():
            self._wrap(owner, attr, stage)
        self._wrap(Checkpointer, "commit", "checkpoint")
        for deferred in ("begin", "settle"):  # a checkpoint taken now, written once acked
            if hasattr(Checkpointer, deferred):
                self._wrap(Checkpointer, deferred, "checkpoint")
        self._wrap_poll(kafka_source.KafkaSource)
        self._wrap_observe(LiveObserver)
        gc.callbacks.append(self._on_gc)
        return self

    def _wrap_poll(self, cls: Any) -> None:
        original, events, batches = cls.poll, self.events, self.batches

        def poll(source: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = original(source, *args, **kwargs)
            end = time.perf_counter()
            events.append(("poll", start, end))
            if out is not None:
                now_us = time.time_ns() // 1000
                sent = out.sent_us
                batches.append({"poll_start": start, "poll_end": end, "sent_us": sent,
                                "polled_us": now_us, "messages": out.message_count,
                                "cpu_polled": time.thread_time(),
                                # how long the oldest / newest tick had waited when taken
                                "age_oldest_ms": (now_us - int(sent.min())) / 1e3
                                if sent.size else float("nan"),
                                "age_newest_ms": (now_us - int(sent.max())) / 1e3
                                if sent.size else float("nan")})
            return out

        cls.poll = poll
        self._undo.append((cls, "poll", original))

    def _wrap_observe(self, cls: Any) -> None:
        original, events, batches = cls.write, self.events, self.batches

        def write(observer: Any, batch: Any) -> Any:
            start = time.perf_counter()
            unwritten = observer.feed.policy.unwritten
            if observer.single and batch.num_rows and unwritten and batches:
                lat = (time.time_ns() // 1000 - unwritten[0][1]) / 1e3
                b = batches[-1]
                b["lat_max_ms"] = float(lat.max()) if lat.size else float("nan")
                b["lat_p50_ms"] = float(np.median(lat)) if lat.size else float("nan")
                b["ticks"] = int(lat.size)
                b["observed"] = start
                b["observed_us"] = time.time_ns() // 1000
                b["cpu_ms"] = (time.thread_time() - b["cpu_polled"]) * 1e3
            try:
                return original(observer, batch)
            finally:
                events.append(("observe", start, time.perf_counter()))

        cls.write = write
        self._undo.append((cls, "write", original))

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self._on_gc)
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    # ------------------------------------------------------------------ analysis

    def per_batch(self) -> list[dict[str, Any]]:
        """Each batch with its stages' milliseconds (from its poll's end to the next poll's
        start), the GC inside it, and the wall time outside every stage."""
        ev = sorted(self.events, key=lambda e: e[1])
        gcs = self.gcs
        out = []
        for i, b in enumerate(self.batches):
            lo = b["poll_end"]
            hi = self.batches[i + 1]["poll_start"] if i + 1 < len(self.batches) else np.inf
            stages: dict[str, float] = defaultdict(float)
            for stage, s, e in ev:
                if s >= lo and e <= hi and stage != "poll":
                    stages[stage] += (e - s) * 1e3
            gc_ms = sum((e - s) * 1e3 for _, s, e, _, _ in gcs if s >= lo and e <= hi)
            gens = sorted({g for g, s, e, _, _ in gcs if s >= lo and e <= hi})
            end = b.get("observed", lo)
            decode = sum((e - s) * 1e3 for stage, s, e in ev
                         if stage == "decode" and s >= b["poll_start"] and e <= lo)
            out.append({**b, "index": i, "stages": dict(stages), "gc_ms": gc_ms, "gc_gens": gens,
                        "decode_ms": decode,
                        "work_ms": (end - lo) * 1e3,
                        "poll_ms": (b["poll_end"] - b["poll_start"]) * 1e3,
                        "gap_ms": (b["poll_start"] - self.batches[i - 1].get(
                            "observed", self.batches[i - 1]["poll_end"])) * 1e3 if i else 0.0})
        return out

    def report(self, worst: int = 12) -> list[str]:
        rows = [b for b in self.per_batch() if "lat_max_ms" in b]
        if not rows:
            return ["no batch measured"]
        t0 = rows[0]["poll_start"]
        lines = [f"{len(rows)} batches with output; ticks a batch p50 "
                 f"{np.median([b['ticks'] for b in rows]):.0f}"]
        for key in ("age_oldest_ms", "work_ms", "poll_ms", "gap_ms", "lat_max_ms"):
            v = np.array([b[key] for b in rows])
            lines.append(f"  {key:<14} p50 {np.median(v):7.2f}  p90 {np.percentile(v, 90):7.2f}"
                         f"  p99 {np.percentile(v, 99):7.2f}  max {v.max():7.2f} ms")
        g = defaultdict(list)
        for gen, s, e, _, thread in self.gcs:
            g[(gen, thread)].append((e - s) * 1e3)
        for (gen, thread), v in sorted(g.items()):
            lines.append(f"  gc gen {gen} on {thread}: {len(v)} passes, {sum(v):.1f} ms in all, "
                         f"max {max(v):.2f} ms")
        big = [(gen, s, e) for gen, s, e, _, _ in self.gcs if (e - s) * 1e3 >= 5]
        if big:
            lines.append("  GC passes of 5 ms or more (t s, generation, ms): " + ", ".join(
                f"{s - t0:.2f} g{gen} {1e3 * (e - s):.0f}" for gen, s, e in big))
        stage_names = [s for s in STAGES if any(s in b["stages"] for b in rows)]
        lines.append("")
        lines.append(f"the first 3 batches, then the {worst} with the latest tick (ms; age = "
                     f"how long the oldest tick had waited when polled; gap = from the previous "
                     f"batch's output to this poll's start; process includes kernels and rules):")
        head = ["t s", "msgs", "lat max", "lat p50", "age old", "age new", "gap", "poll",
                "work", *stage_names, "gc", "gens"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---:|" * len(head))
        first = rows[:3]
        for b in first + sorted(rows[3:], key=lambda b: -b["lat_max_ms"])[:worst]:
            cells = [f"{b['poll_start'] - t0:.2f}", f"{b['messages']}", f"{b['lat_max_ms']:.1f}",
                     f"{b['lat_p50_ms']:.1f}", f"{b['age_oldest_ms']:.1f}",
                     f"{b['age_newest_ms']:.1f}", f"{b['gap_ms']:.1f}", f"{b['poll_ms']:.1f}",
                     f"{b['work_ms']:.1f}",
                     *[f"{b['stages'].get(s, 0.0):.1f}" for s in stage_names],
                     f"{b['gc_ms']:.1f}", ",".join(map(str, b["gc_gens"]))]
            lines.append("| " + " | ".join(cells) + " |")
        return lines


def timed_rate(broker: Any, rate: float, seconds: float, tmp: str, *, linger_ms: int = 2,
               batch_size: int = 20_000, consumer: dict[str, str] | None = None,
               gc_mode: str = "default", switch_interval: float | None = None,
               worst: int = 12, state: str | None = None, parquet: bool = False,
               job: str | None = None) -> tuple[dict[str, float], list[str]]:
    """One offered rate as ``live.py`` runs it, with the timeline; (percentiles, report)."""
    import multiprocessing as mp
    import os
    import sys

    import psutil
    from live import run_job  # beside this file
    from live_producer import (
        producer_lines,
        producer_main,  # beside this file
        tail_lines,
    )
    from live_thirds import sample_threads, schedstat, thirds_lines, thread_cpu  # beside this file

    from tickflow.connectors.kafka_client import client_settings, ensure_topic

    topic = f"timeline-{int(rate)}-{int(time.time() * 1000) % 10**8}"
    ensure_topic(client_settings(broker.bootstrap), topic, 1)
    ctx = mp.get_context("spawn")
    produced, ready = ctx.Value("q", 0), ctx.Event()
    npz = os.path.join(tmp, f"{topic}.npz")
    proc = ctx.Process(target=producer_main, args=(broker.bootstrap, topic, rate, seconds,
                                                   200_000, produced, ready, npz))
    broker_proc = psutil.Process(broker.pid)

    def broker_cpu() -> float:
        total = 0.0
        for p in [broker_proc, *broker_proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    marks: dict[str, float] = {}
    cpu_samples: list[tuple[float, float, float]] = []  # (perf_counter, broker, job process)
    # each thread's latest CPU, sampled while the job runs (librdkafka's end with their client)
    latest: dict[str, tuple[str, float]] = {}
    sampling = threading.Event()

    def start_producer(source: Any) -> None:
        proc.start()
        if not ready.wait(120):
            print("producer did not start within 120 s", file=sys.stderr)
        marks["broker"], marks["job"] = broker_cpu(), time.process_time()
        marks["threads"] = thread_cpu()  # type: ignore[assignment]
        marks["sched"], marks["wall"] = schedstat(), time.perf_counter()  # type: ignore[assignment]
        threading.Thread(target=sample_threads, args=(latest, sampling, cpu_samples,
                                                       broker_cpu), daemon=True).start()

    def until(runner: Any) -> bool:
        if proc.exitcode not in (None, 0):
            return True
        return proc.exitcode is not None and runner.summary.messages >= produced.value > 0

    lines = [f"consumer {consumer or {}}, linger_ms {linger_ms}, gc {gc_mode}, "
             f"switch interval {switch_interval or sys.getswitchinterval()}"
             + (", a Parquet sink too" if parquet else "") + (f", job {job}" if job else "")]
    old_switch = sys.getswitchinterval()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    extra = ""
    if consumer:
        extra = "    consumer: {" + ", ".join(f'"{k}": {v}' for k, v in consumer.items()) + "}\n"
    if state:  # BACKEND:EVERY, e.g. rocksdb:200ms: a top-level block after the source's lines
        backend, every = state.split(":")
        extra += (f"state: {{backend: {backend}, path: {tmp}/state-{topic}, "
                  f"checkpoint: {{every: {every}}}}}\n")
        lines[0] += f", state {state}"
    try:
        with Timeline() as tl, _gc(gc_mode):
            summary, _ = run_job(broker.bootstrap, topic, tmp, until, linger_ms=linger_ms,
                                 parquet=parquet, job=job,
                                 on_open=start_producer, batch_size=batch_size,
                                 source_format=extra)
    finally:
        sys.setswitchinterval(old_switch)
    sched, wall = schedstat(), time.perf_counter() - marks["wall"]
    proc.join()
    job_cpu, b_cpu = time.process_time() - marks["job"], broker_cpu() - marks["broker"]
    sampling.set()
    threads = thread_cpu(marks["threads"], latest)  # type: ignore[arg-type]
    pct = summary.latency_percentiles_ms()
    lines.append(f"offered {rate:,.0f}/s: {summary.ticks:,} ticks, p50 {pct.get('p50', 0):.2f} "
                 f"p99 {pct.get('p99', 0):.2f} p99.9 {pct.get('p99.9', 0):.2f} ms; "
                 f"load {os.getloadavg()[0]:.1f}")
    producer: dict[str, Any] = {}
    if os.path.exists(npz):
        with np.load(npz) as z:
            producer = {k: z[k] for k in z.files}
        producer["producer_cpu_s"] = f"{float(producer.pop('cpu_s')):.2f}"
        producer["sent"] = int(producer["sent"])
    producer["broker_cpu_s"] = f"{b_cpu:.2f}"
    producer["job_cpu_s"] = f"{job_cpu:.2f} (the job's process, librdkafka threads included)"
    producer["job_threads_cpu_s"] = ", ".join(f"{name} {cpu:.2f}" for name, cpu in threads[:5])
    if sched and marks.get("sched"):  # the driver's thread from the producer's start to the end
        run, queued = (sched[i] - marks["sched"][i] for i in (0, 1))  # type: ignore[index]
        producer["driver_thread_s"] = (f"wall {wall:.2f}: on the CPU {run:.2f}, runnable but "
                                       f"waiting for a core {queued:.2f}, blocked or asleep "
                                       f"{max(wall - run - queued, 0):.2f}")
    producer["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += [*tl.report(worst), "", *producer_lines(producer)]
    if "ack_ms" in producer:
        polls = np.array([(s, e) for stage, s, e in tl.events if stage == "poll"])
        per_batch = tl.per_batch()
        lines += tail_lines(per_batch, np.asarray(producer["ack_ms"]), polls)
        lines += thirds_lines(per_batch, np.asarray(producer["ack_ms"]), cpu_samples)
    return pct, lines


class _gc:
    """``default``: as tickflow does; ``off``: no collection during the run (a bound)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __enter__(self) -> None:
        if self.mode == "off":
            gc.disable()

    def __exit__(self, *exc: Any) -> None:
        gc.enable()


def main() -> None:
    import argparse
    import os
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tickflow.connectors.embedded_broker import EmbeddedBroker

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=1, help="runs on the same broker")
    ap.add_argument("--linger-ms", type=int, default=2, help="the source's linger_ms")
    ap.add_argument("--consumer", action="append", default=[],
                    help="extra librdkafka consumer setting KEY=VALUE (repeatable)")
    ap.add_argument("--gc", choices=["default", "off"], default="default")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval for the job's process")
    ap.add_argument("--worst", type=int, default=12, help="slowest batches listed")
    ap.add_argument("--parquet", action="store_true",
                    help="a Parquet sink of every feature too (a writer thread beside the "
                         "driver)")
    ap.add_argument("--job", default=None,
                    help="a job YAML instead of the benchmark's (e.g. jobs/live.yaml)")
    ap.add_argument("--state", default=None,
                    help="checkpointed job: BACKEND:EVERY, e.g. rocksdb:200ms")
    args = ap.parse_args()
    consumer = dict(kv.split("=", 1) for kv in args.consumer)
    print(f"# {os.cpu_count()} cores; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for _ in range(args.runs):
            _, lines = timed_rate(broker, args.rate, args.seconds, tmp,
                                  linger_ms=args.linger_ms, consumer=consumer,
                                  gc_mode=args.gc, switch_interval=args.switch_interval,
                                  worst=args.worst, state=args.state,
                                  parquet=args.parquet, job=args.job)
            print("\n".join(lines), "\n", flush=True)


if __name__ == "__main__":
    main()
