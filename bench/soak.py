"""Soak: the live job at a fixed offered rate for a long stretch of recorded time.

A capture of simulated ticks is written with evenly spaced timestamps covering
``--recorded-minutes`` of market time (at least 10 by default); ``run-job jobs/live.yaml
--replay CAPTURE --speed Nx`` replays it at N times the recorded pace, so the job sees
``--rate`` ticks/s for ``recorded / N`` seconds of wall time. The broker is an embedded one
that this script starts (``KAFKA_BOOTSTRAP``), so it can watch the job from outside.

Every ``--sample-s`` seconds it records the job's RSS, the ticks produced (the topic's end
offset), the job's own count of ticks processed and its consumer lag (its totals line, every
5 s; committed offsets lag behind by design, as they follow the Parquet sink), and the files
the job has left under its output directory (count and bytes). At the end it checks that
nothing was lost (features rows = ticks replayed) and prints what grew: RSS after the first
minute (goal: within 10%), the lag's trend, and the bytes on disk per tick. ``--probe`` also
logs where the job's memory is, from inside it (``bench/soak_probe/sitecustomize.py``).

    python bench/soak.py                                   # 10 recorded minutes at 20K/s, 10x
    python bench/soak.py --rate 20000 --speed 10 --recorded-minutes 10   # 60 s of wall time
    python bench/soak.py --rate 50000 --speed 1 --recorded-minutes 10 --replay-linger-ms 1000

The embedded broker keeps every message in memory and its fetches list every stored record
batch of the partition, so a soak at 50K ticks/s needs the replay's long batches (250 or 1,000
ms ran 10 minutes; the default 5 ms stalled after 50 s) and ends the machine's memory in under
half an hour (about 300 bytes a tick, the ``broker MB`` column); docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tickflow.connectors.embedded_broker import EmbeddedBroker  # noqa: E402
from tickflow.connectors.kafka_client import client_settings  # noqa: E402

GROUP = "tickflow-live"  # jobs/live.yaml's group_id


def write_capture(path: Path, rows: int, spacing_us: float) -> None:
    """Simulated ticks, timestamps re-spaced evenly ``spacing_us`` apart (a fixed rate)."""
    from tickflow.connectors.simulator import write_simulated_parquet

    raw = path.with_suffix(".raw.parquet")
    write_simulated_parquet(raw, rows=rows, symbols=14, seed=11)
    table = pq.read_table(raw)
    start = table.column("timestamp")[0].value
    stamps = pa.array(start + (np.arange(table.num_rows) * spacing_us).astype(np.int64),
                      pa.int64()).cast(table.schema.field("timestamp").type)
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamps)
    pq.write_table(table, path)
    raw.unlink()


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def broker_rss_mb(shell_pid: int | None) -> float:
    """The embedded broker's RSS: it keeps every message in memory (the child of its
    watcher shell, connectors/embedded_broker.py)."""
    try:
        children = Path(f"/proc/{shell_pid}/task/{shell_pid}/children").read_text().split()
    except (OSError, TypeError):
        return float("nan")
    return max((rss_mb(int(c)) for c in children), default=float("nan"))


def produced(consumer, topic: str) -> int:
    """The topic's end offset, summed over partitions."""
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
               for p in meta.partitions)


TOTALS = re.compile(r"^([\d,]+) ticks, ([\d,]+) ticks/s, lag ([\d,]+),", re.M)


def job_totals(log: Path) -> tuple[int, int]:
    """(ticks processed, consumer lag) from the job's latest totals line."""
    found = TOTALS.findall(log.read_text(errors="replace"))
    if not found:
        return 0, 0
    ticks, _, lag = found[-1]
    return int(ticks.replace(",", "")), int(lag.replace(",", ""))


def files(out: Path) -> tuple[int, int]:
    found = [p for p in out.rglob("*") if p.is_file()]
    return len(found), sum(p.stat().st_size for p in found)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=20_000, help="offered ticks/s (wall time)")
    p.add_argument("--speed", type=float, default=10, help="replay speed (compression)")
    p.add_argument("--replay-linger-ms", type=int, default=100,
                   help="the replay producer's batching wait; the embedded broker slows down "
                        "as record batches pile up (at 10K ticks/s with 5 ms batches the job "
                        "starved after about 700K ticks; at 50K with 5 ms, after 50 s; 250 and "
                        "1000 ran 10 minutes), so the soak measures the job, not that")
    p.add_argument("--recorded-minutes", type=float, default=10)
    p.add_argument("--sample-s", type=float, default=5)
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    p.add_argument("--probe", action="store_true",
                   help="log the job's memory from inside (RSS, pyarrow's pool, malloc's heap) "
                        "every --sample-s seconds: bench/soak_probe/sitecustomize.py")
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                   help="with --probe: trace Python's allocations (FRAMES deep) and log the call "
                        "sites whose memory grew since the first minute (slows the job)")
    p.add_argument("--trim", action="store_true",
                   help="with --probe: call malloc_trim after each probe line and log the RSS "
                        "after it (how much of malloc's free heap was resident)")
    args = p.parse_args()
    wall_s = args.recorded_minutes * 60 / args.speed
    rows = int(args.rate * wall_s)
    work = Path(args.keep or tempfile.mkdtemp(prefix="tickflow-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    capture, out = work / "capture.parquet", work / "out"
    write_capture(capture, rows, spacing_us=1e6 * args.speed / args.rate)
    topic = f"soak-ticks-{os.getpid()}"
    print(f"{rows:,} ticks over {args.recorded_minutes:g} recorded minutes, replayed at "
          f"{args.speed:g}x: {args.rate:,.0f} ticks/s offered for {wall_s:.0f} s "
          f"(work dir {work}; load average {os.getloadavg()[0]:.1f})", flush=True)
    from confluent_kafka import Consumer

    with EmbeddedBroker() as broker:
        env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap, "TICKS_TOPIC": topic,
               "SIGNALS_TOPIC": f"{topic}-signals", "OUT_DIR": str(out),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                   "PYTHONPATH")]))}
        if args.probe:
            env.update(PYTHONPATH=f"{ROOT / 'bench/soak_probe'}{os.pathsep}{env['PYTHONPATH']}",
                       TICKFLOW_SOAK_PROBE=str(work / "probe.log"),
                       TICKFLOW_SOAK_PROBE_S=f"{args.sample_s:g}")
            if args.trim:
                env["TICKFLOW_SOAK_TRIM"] = "1"
            if args.tracemalloc:
                env["TICKFLOW_SOAK_TRACEMALLOC"] = str(args.tracemalloc)
        log = (work / "run-job.log").open("w")
        start = time.monotonic()
        job = subprocess.Popen(
            [sys.executable, "-m", "tickflow.engine.cli", str(ROOT / "jobs/live.yaml"),
             "--replay", str(capture), "--speed", f"{args.speed:g}x", "--no-view",
             "--replay-linger-ms", str(args.replay_linger_ms)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        watcher = Consumer(client_settings(broker.bootstrap, **{"group.id": GROUP}))
        samples = []
        print(f"{'t s':>6}{'job RSS MB':>12}{'produced':>12}{'processed':>12}{'lag':>10}"
              f"{'files':>7}{'bytes':>15}{'broker MB':>11}{'load':>6}", flush=True)
        while job.poll() is None:
            time.sleep(args.sample_s)
            t = time.monotonic() - start
            rss = rss_mb(job.pid)
            if rss != rss:  # the job has just ended
                break
            done, lag = job_totals(work / "run-job.log")
            n_files, size = files(out)
            row = (t, rss, produced(watcher, topic), done, lag, n_files, size)
            samples.append(row)
            print(f"{row[0]:>6.0f}{row[1]:>12.0f}{row[2]:>12,}{row[3]:>12,}{row[4]:>10,}"
                  f"{row[5]:>7}{row[6]:>15,}{broker_rss_mb(broker.pid):>11.0f}"
                  f"{os.getloadavg()[0]:>6.1f}", flush=True)
        job.wait()
        watcher.close()
        log.close()
    elapsed = time.monotonic() - start
    text = (work / "run-job.log").read_text()
    tail = [line for line in text.splitlines() if not line.startswith(("BUY", "SELL", "REGIME"))]
    print("\n".join(tail[-12:]))
    if args.probe and (work / "probe.log").exists():
        print(f"\nthe job's memory from inside ({work / 'probe.log'}):")
        print((work / "probe.log").read_text().rstrip())
        traced = work / "probe.log.tracemalloc"
        if traced.exists():  # the last diff: what grew most since the first minute
            print(traced.read_text().rstrip().rpartition("\n== ")[2])
    features = out / "live_features.parquet"
    kept = pq.read_metadata(features).num_rows if features.exists() else 0
    print(f"\nexit {job.returncode} after {elapsed:.0f} s; features rows {kept:,} of {rows:,} "
          f"replayed ({'nothing lost' if kept == rows else 'LOST ' + str(rows - kept)})")
    after = [s for s in samples if s[0] >= 60] or samples[len(samples) // 2:]
    if after:
        first, last = after[0], after[-1]
        growth = (last[1] - first[1]) / first[1] * 100 if first[1] else float("nan")
        lags = np.array([s[4] for s in samples], dtype=float)
        ts = np.array([s[0] for s in samples], dtype=float)
        slope = float(np.polyfit(ts, lags, 1)[0]) if len(samples) > 2 else float("nan")
        print(f"job RSS {first[1]:.0f} MB at {first[0]:.0f} s -> {last[1]:.0f} MB at "
              f"{last[0]:.0f} s ({growth:+.1f}%; goal within 10% after the first minute)")
        print(f"lag trend {slope:+,.0f} messages/s (flat: near 0), max lag {lags.max():,.0f}")
        latency = re.search(r"^tick-to-signal latency: (.*)$", text, re.M)
        if latency:  # from the Kafka timestamp, so the replay's batching wait is in it
            print(f"tick-to-signal latency {latency.group(1)} (includes the replay's batching "
                  f"wait, up to --replay-linger-ms {args.replay_linger_ms})")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        n_files, size = files(out)
        print(f"files left: {n_files} ({size:,} bytes, {size / max(rows, 1):.1f} B/tick): " +
              ", ".join(sorted(str(p.relative_to(out)) for p in out.rglob('*')
                               if p.is_file())[:8]))
    return 0 if job.returncode == 0 and kept == rows else 1


if __name__ == "__main__":
    sys.exit(main())
