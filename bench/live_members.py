"""1 against 2 live member processes (``group:``) draining a pre-filled 4-partition topic.

Each member is a ``run-job`` process: rocksdb state with a checkpoint after every batch (so
the offsets committed with each checkpoint show progress as it happens), the core features and
three signals to a Kafka topic. The drain rate counts from the first committed offset (the
consumer-group join, numba's cache loading and each process's start are before it) to the
moment every tick is committed; then the members are stopped (SIGTERM). Used by
``bench/live.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PARTITIONS = 4
QUIET = ["--quiet"]

JOB = """
name: bench-members
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    batch_size: 20000
    linger_ms: 20
    dead_letter_path: dead.jsonl
    group: {{id: {group}, session_timeout: 3s, heartbeat: 300ms}}
include: [{root}/jobs/features/core.yaml]
signals:
  buy: zscore < -2.0 and rsi < 30
  sell: zscore > 2.0 and rsi > 70
  regime_change: cusum_alarm == 1
sinks:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}-signals-{members}
    columns: [timestamp, symbol, price, zscore, rsi, cusum_stat, buy, sell, regime_change]
    only_rows_with: [buy, sell, regime_change]
state:
  backend: rocksdb
  checkpoint: {{every: 1}}
executor: {{workers: 1}}
"""


def fill(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]], ticks: int) -> None:
    """``ticks`` messages keyed by symbol into a new topic of ``PARTITIONS`` partitions."""
    from confluent_kafka import Producer

    from tickflow.connectors.kafka_client import client_settings, ensure_topic
    from tickflow.connectors.replay import produce_retrying

    ensure_topic(client_settings(bootstrap), topic, PARTITIONS)
    p = Producer(client_settings(bootstrap, **{"linger.ms": 5, "batch.num.messages": 10_000,
                                               "queue.buffering.max.messages": 2_000_000}))
    for i in range(ticks):
        key, value = pairs[i % len(pairs)]
        produce_retrying(p, topic, value, key)
    p.flush()


def _committed(consumer: object, topic: str) -> int:
    from confluent_kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        done = consumer.committed(tps, timeout=5)  # type: ignore[attr-defined]
    except Exception:
        return 0
    return sum(max(0, tp.offset) for tp in done)


def members_drain(bootstrap: str, topic: str, ticks: int, members: int, tmp: str,
                  timeout_s: float = 300.0) -> dict:
    """Start ``members`` processes on the filled ``topic``; the ticks/s they drain it at."""
    from confluent_kafka import Consumer

    from tickflow.connectors.kafka_client import client_settings

    work = Path(tmp) / f"members-{members}"
    work.mkdir(parents=True, exist_ok=True)
    group = f"{topic}-{members}"
    (work / "job.yaml").write_text(JOB.format(bootstrap=bootstrap, topic=topic, group=group,
                                              root=ROOT, members=members))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml",
                               *QUIET], cwd=work, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(members)]
    watcher = Consumer(client_settings(bootstrap, **{"group.id": f"{group}.offsets",
                                                     "enable.auto.commit": False}))
    first: tuple[float, int] | None = None
    ended = total = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            total = _committed(watcher, topic)
            if total and first is None:
                first = (time.perf_counter(), total)
            if total >= ticks:
                ended = time.perf_counter()
                break
            time.sleep(0.02)
    finally:
        watcher.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode not in (0, None)]
    if failed or first is None or total < ticks:
        return {"members": members, "ticks": total, "ticks_per_s": float("nan"),
                "error": failed[0][-400:] if failed else
                f"did not drain: first commit {first}, committed {total:,}"}
    rate = (total - first[1]) / max(ended - first[0], 1e-9)
    return {"members": members, "ticks": total, "ticks_per_s": rate}
