"""The benchmark producer's own record and the latency split it allows (bench/live_timeline.py).

``producer_main`` is the benchmarks' paced tick producer (bench/live.py's latency rows, its
floor in bench/live_floor.py, bench/live_timeline.py); ``ProducerRecord`` is kept by it in the
producer process and saved as an
.npz; ``producer_lines`` says how late the producer was on its own schedule; ``tail_lines``
joins the job's per-tick latencies to the producer's delivery reports.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np

from tickflow.connectors.kafka_client import client_settings
from tickflow.connectors.kafka_topics import SENT_HEADER


def ticks_values(rows: int, symbols: int = 14) -> list[tuple[bytes, bytes]]:
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource
    from tickflow.connectors.tick_codec import encode_tick_rows

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=symbols,
                                          seed=3), RunContext(job_name="bench"))
    out: list[tuple[bytes, bytes]] = []
    for batch in src.batches(None, 65_536):
        out.extend(encode_tick_rows(batch))
    return out


def producer_main(bootstrap: str, topic: str, rate: float, seconds: float, rows: int,
                  produced: mp.Value, ready: mp.Event,  # type: ignore[type-arg]
                  timeline: str | None = None, settings: dict | None = None) -> None:
    """Offer ``rate`` ticks/s for ``seconds`` (paced every millisecond), stamping send time;
    ``rows`` simulated ticks at least, more if the run sends more (never one twice).
    ``timeline``: an .npz path for the producer's own record (bench/live_timeline.py);
    ``settings``: librdkafka producer settings over the defaults (bench/live_floor.py)."""
    from confluent_kafka import Producer

    # as many rows as are sent: cycled rows would go back in time, and the job's quality stage
    # drops those as out of order (a stream's default) instead of computing them
    pairs = ticks_values(max(rows, int(rate * seconds)))
    p = Producer(client_settings(bootstrap, **{"linger.ms": 1, "batch.num.messages": 10_000,
                                               "queue.buffering.max.messages": 2_000_000,
                                               **(settings or {})}))
    ready.set()
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds) if rate > 0 else len(pairs)

    record = ProducerRecord(timeline, start, rate)  # records nothing without a path
    while sent < total:
        now = time.perf_counter()
        due = total if rate <= 0 else min(total, int((now - start) * rate))
        if sent < due:
            record.step(now, sent)
        while sent < due:
            key, value = pairs[sent % len(pairs)]
            stamp = str(time.time_ns() // 1000).encode()
            try:
                p.produce(topic, value=value, key=key, headers=[(SENT_HEADER, stamp)],
                          **record.options)
            except BufferError:
                p.poll(0.01)
                continue
            sent += 1
        p.poll(0)
        with produced.get_lock():
            produced.value = sent
        if rate > 0:
            before = time.perf_counter()
            time.sleep(0.001)
            record.slept(before)
    p.flush()
    record.save(sent)
    with produced.get_lock():
        produced.value = sent


class ProducerRecord:
    """The benchmark producer's own record (``producer_main``), when given a path: each
    pacing step's lateness behind the planned send time of its first tick, each 1 ms sleep's
    length, each delivery report's time after its message's create time (ms clock), and its
    CPU seconds. ``options`` go to each ``produce`` (the delivery callback)."""

    def __init__(self, path: str | None, start: float, rate: float):
        self.path, self.start, self.rate = path, start, rate
        self.late: list[float] = []
        self.sleeps: list[float] = []
        self.acked: list[float] = []
        self.cpu = time.process_time()
        self.options: dict[str, Any] = {} if path is None else {"on_delivery": self.delivered}

    def step(self, now: float, sent: int) -> None:
        if self.path is not None and self.rate > 0:
            self.late.append(1e3 * (now - self.start - sent / self.rate))

    def slept(self, before: float) -> None:
        if self.path is not None:
            self.sleeps.append(1e3 * (time.perf_counter() - before))

    def delivered(self, err: Any, msg: Any) -> None:
        self.acked.append(time.time() * 1e3 - msg.timestamp()[1])

    def save(self, sent: int) -> None:
        if self.path is not None:
            np.savez(self.path, late_ms=np.array(self.late), sleep_ms=np.array(self.sleeps),
                     sent=sent, cpu_s=time.process_time() - self.cpu,
                     ack_ms=np.array(self.acked))


def tail_lines(batches: list[dict[str, Any]], ack_ms: np.ndarray,
               polls: np.ndarray | None = None) -> list[str]:
    """Each tick's latency split, joined to the producer's delivery reports by order (one
    partition: reports and offsets come in the same order): until the broker acknowledged it
    (producer linger, broker append); then until the job's poll returned it, in three: the
    time the job spent outside its polls meanwhile (busy with earlier batches: ticks waiting
    for the job), decoding its batch (inside the poll) and the rest (the fetch: the broker's
    answer, the consumer's queue); then
    the job's own batch, in its stages, its thread's CPU and the rest of its wall time
    (off the CPU: other processes had the core, or another thread the GIL). Percentiles of
    each, and their means over the ticks past the p99 (``batches``: ``Timeline.per_batch``,
    ``polls``: every poll's (start, end) in perf_counter seconds)."""
    done = [b for b in batches if "observed_us" in b]
    sizes = [b["sent_us"].size for b in done]
    sent = np.concatenate([b["sent_us"] for b in done])
    polled = np.repeat([b["polled_us"] for b in done], sizes)
    observed = np.repeat([b["observed_us"] for b in done], sizes)
    n = min(sent.size, ack_ms.size)
    if n == 0 or n != sent.size:
        return [f"  (latency split skipped: {sent.size} ticks, {ack_ms.size} reports)"]
    total = (observed - sent) / 1e3
    waited = (polled - sent) / 1e3 - ack_ms[:n]
    parts: dict[str, np.ndarray] = {"acknowledged": ack_ms[:n]}
    if polls is not None and len(polls):
        # perf_counter -> wall µs, from the first batch's poll end
        shift = done[0]["polled_us"] - done[0]["poll_end"] * 1e6
        busy = _outside(polls * 1e6 + shift, sent + ack_ms[:n] * 1e3, polled) / 1e3
        parts["job busy, earlier batches"] = np.minimum(busy, np.maximum(waited, 0))
        decode = np.repeat([b.get("decode_ms", 0.0) for b in done], sizes)
        parts["fetch"] = waited - parts["job busy, earlier batches"] - decode
        parts["decode (in its poll)"] = decode
    else:
        parts["polled"] = waited
    parts["own batch"] = (observed - polled) / 1e3
    for stage in sorted({s for b in done for s in b["stages"]}):
        if stage != "process":  # holds kernels and rules
            parts[f"  {stage}"] = np.repeat([b["stages"].get(stage, 0.0) for b in done], sizes)
    if all("cpu_ms" in b for b in done):
        cpu = np.repeat([b["cpu_ms"] for b in done], sizes)
        parts["  its thread's CPU"] = cpu
        parts["  off the CPU"] = np.maximum(parts["own batch"] - cpu, 0.0)
    parts["  GC in it"] = np.repeat([b["gc_ms"] for b in done], sizes)
    tail = total >= np.percentile(total, 99)
    out = [f"latency split ({n:,} ticks; ms): total p50 {np.median(total):.1f} "
           f"p99 {np.percentile(total, 99):.1f}; mean over the slowest 1% "
           f"{total[tail].mean():.1f}"]
    for name, v in parts.items():
        out.append(f"  {name:<26} p50 {np.median(v):6.2f} p99 {np.percentile(v, 99):6.2f}; "
                   f"mean over the slowest 1% {v[tail].mean():6.2f}")
    return out


def _outside(polls_us: np.ndarray, start_us: np.ndarray, end_us: np.ndarray) -> np.ndarray:
    """Per tick, the µs between ``start`` and ``end`` that the job spent outside a poll."""
    polls_us = polls_us[np.argsort(polls_us[:, 0])]
    gap_start, gap_end = polls_us[:-1, 1], polls_us[1:, 0]
    length = np.maximum(gap_end - gap_start, 0)
    before = np.concatenate([[0.0], np.cumsum(length)])

    def upto(t: np.ndarray) -> np.ndarray:  # outside-poll time from the first poll to t
        k = np.searchsorted(gap_start, t, side="right") - 1
        inside = np.clip(t - gap_start[np.maximum(k, 0)], 0, length[np.maximum(k, 0)])
        return np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0.0)

    return np.maximum(upto(end_us.astype(float)) - upto(start_us.astype(float)), 0.0)


def producer_lines(p: dict[str, Any]) -> list[str]:
    """The producer's own schedule: how far behind its planned send times it stamped ticks."""
    late = np.asarray(p["late_ms"])
    sleep = np.asarray(p["sleep_ms"])
    out = [f"producer: {p['sent']:,} ticks; stamped behind the planned send time p50 "
           f"{np.median(late):.2f} p99 {np.percentile(late, 99):.2f} max {late.max():.2f} ms "
           f"(per 1 ms pacing step); sleep(1 ms) took p50 {np.median(sleep):.2f} p99 "
           f"{np.percentile(sleep, 99):.2f} max {sleep.max():.2f} ms"]
    if "ack_ms" in p and len(p["ack_ms"]):
        ack = np.asarray(p["ack_ms"])
        out.append(f"  broker's acknowledgement after produce(): p50 {np.median(ack):.1f} p99 "
                   f"{np.percentile(ack, 99):.1f} max {ack.max():.1f} ms (ms clock)")
    for name in ("producer_cpu_s", "broker_cpu_s", "job_cpu_s", "job_threads_cpu_s",
                 "driver_thread_s", "loadavg"):
        if name in p:
            out.append(f"  {name}: {p[name]}")
    return out
