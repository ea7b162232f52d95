"""A live run in thirds: whether the lag creeps, and which part of a tick's trip grows with it.

``thirds_lines(batches, ack_ms, samples)`` splits a ``bench/live_timeline.py`` run into thirds
by send time and prints, for each: the ticks' latency (p50, p99), the broker's acknowledgement,
the wait until the job's poll returned them, the job's own batch, the batch sizes, the job
driver thread's CPU a tick, and the CPU the broker, the job's process and the producer used
(sampled every 50 ms while the run went: ``samples`` of (perf_counter, broker CPU s, job
process CPU s)). A creep the broker makes shows as acknowledgement or fetch growing with the
broker's CPU while the job's CPU a tick stays flat (Tansu lists every record batch of the
partition on each fetch, so a fetch costs more as the run goes; docs/performance.md).

Also the CPU probes the timeline samples with: each thread's CPU (``thread_cpu``), and the
driver thread's time on the CPU against its time runnable but waiting for a core
(``schedstat``: a job starved by other processes, not busy itself, shows the second).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


def thirds_lines(batches: list[dict[str, Any]], ack_ms: np.ndarray,
                 samples: list[tuple[float, float, float]]) -> list[str]:
    done = [b for b in batches if "observed_us" in b and "cpu_ms" in b]
    if len(done) < 3:
        return []
    sizes = np.array([b["sent_us"].size for b in done])
    sent = np.concatenate([b["sent_us"] for b in done])
    if ack_ms.size < sent.size:
        return [f"  (thirds skipped: {sent.size} ticks, {ack_ms.size} reports)"]
    polled = np.repeat([b["polled_us"] for b in done], sizes)
    observed = np.repeat([b["observed_us"] for b in done], sizes)
    total = (observed - sent) / 1e3
    ack = ack_ms[:sent.size]
    to_poll = (polled - sent) / 1e3 - ack
    own = (observed - polled) / 1e3
    which = np.minimum(((sent - sent[0]) * 3) // max(int(sent[-1] - sent[0]) + 1, 1), 2)
    batch_third = which[np.cumsum(sizes) - 1]
    t0 = done[0]["poll_start"]
    span = max(done[-1]["poll_start"] - t0, 1e-9)
    out = ["by third of the run (ticks by send time; ms, CPU µs a tick; broker and job CPU as a "
           "share of one core over the third's wall time):",
           "| third | ticks | total p50 / p99 | acknowledged p50 / p99 | until polled p50 / p99 "
           "| own batch p50 / p99 | ticks a batch p50 | driver CPU µs a tick | broker CPU | "
           "job process CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    s = np.array(samples) if samples else np.zeros((0, 3))
    for k in range(3):
        m = which == k
        if not m.any():
            continue
        bm = batch_third == k
        cpu = sum(b["cpu_ms"] for b, x in zip(done, bm, strict=True) if x)
        lo, hi = t0 + span * k / 3, t0 + span * (k + 1) / 3
        share = ["-", "-"]
        inside = s[(s[:, 0] >= lo) & (s[:, 0] <= hi)] if s.size else s
        if len(inside) >= 2:
            dt = inside[-1, 0] - inside[0, 0]
            share = [f"{100 * (inside[-1, j] - inside[0, j]) / dt:.0f}%" for j in (1, 2)]
        out.append(
            f"| {k + 1} | {int(m.sum()):,} | {np.median(total[m]):.1f} / "
            f"{np.percentile(total[m], 99):.1f} | {np.median(ack[m]):.1f} / "
            f"{np.percentile(ack[m], 99):.1f} | {np.median(to_poll[m]):.1f} / "
            f"{np.percentile(to_poll[m], 99):.1f} | {np.median(own[m]):.1f} / "
            f"{np.percentile(own[m], 99):.1f} | {np.median(sizes[bm]) if bm.any() else 0:.0f} | "
            f"{1e3 * cpu / max(int(sizes[bm].sum()), 1):.2f} | {share[0]} | {share[1]} |")
    return out


def schedstat() -> tuple[float, float] | None:
    """This thread's seconds on the CPU and runnable in the run queue (Linux schedstat)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            run, queued = f.read().split()[:2]
    except OSError:
        return None
    return int(run) / 1e9, int(queued) / 1e9


def sample_threads(latest: dict[str, tuple[str, float]], done: threading.Event,
                    samples: list[tuple[float, float, float]], broker_cpu: Any) -> None:
    beat = 0
    while not done.is_set():
        latest.update(thread_cpu())
        if beat % 5 == 0:  # the broker's CPU (psutil over its process tree) every 250 ms
            samples.append((time.perf_counter(), broker_cpu(), time.process_time()))
        beat += 1
        time.sleep(0.05)


def thread_cpu(since: dict[str, tuple[str, float]] | None = None,
                sampled: dict[str, tuple[str, float]] | None = None) -> Any:
    """This process's threads' CPU seconds (Linux /proc): by thread id, or with ``since``
    the busiest ones since then as (name, seconds), a thread that ended counted as last
    ``sampled``. librdkafka names its threads ``rdk:*`` (each client has its own)."""
    import os

    now: dict[str, tuple[str, float]] = dict(sampled or {})
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        now[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    if since is None:
        return now
    used = [(f"{name}[{tid}]", cpu - since.get(tid, (name, 0.0))[1])
            for tid, (name, cpu) in now.items()]
    return sorted(used, key=lambda x: -x[1])
