"""What a live run keeps per batch stays bounded (a live job runs for days; bench/soak.py
measures it over minutes): here, the consumed offsets waiting for the Parquet sink to be
durable, which used to be one entry a batch until the run ended."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.kafka.util import committed_offset, simulated, unique
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner, replay_then_end
from tickflow.engine.loader import load_job

ROWS = 6_000

JOB = """
name: live-bounded
mode: live
sources:
  - kind: kafka
    bootstrap: "{bootstrap}"
    topic: {topic}
    group_id: {topic}-g
    batch_size: 50
steps:
  - {{kernel: ema, params: {{span: 10}}}}
sinks:
  - {{kind: parquet, path: {out}}}
executor: {{workers: 1}}
"""


def test_offsets_waiting_for_a_parquet_sink_stay_bounded(kafka_broker, tmp_path: Path) -> None:
    """With no checkpoints a Parquet sink is durable only once closed, so the offsets are all
    committed at the end; until then the policy holds a few entries, not one a batch."""
    capture, out = tmp_path / "capture.parquet", tmp_path / "out.parquet"
    pq.write_table(simulated(ROWS, symbols=3, seed=5), capture)
    topic = unique("bounded")
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(bootstrap=kafka_broker.bootstrap, topic=topic, out=out))
    runner = LiveRunner(compile_job(load_job(path)), max_seconds=120)
    runner.on_open = replay_then_end(runner, str(capture), "max", follow=False)
    held: list[tuple[int, int]] = []  # (batches so far, offsets entries held)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            feed = runner.feed
            if feed is not None:
                held.append((feed.seq + 1, len(feed.policy.pending)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = runner.run()
    finally:
        done.set()
        watcher.join(30)
    assert not runner.errors and summary.ticks == ROWS
    batches = runner.feed.seq + 1
    assert batches >= ROWS // 50, batches  # batch_size 50: many batches, one entry each before
    assert max(n for _, n in held) <= 3, held[-20:]
    assert any(b > 30 for b, _ in held), "the watcher saw none of the run"
    assert not runner.feed.policy.pending  # all committed at the end ...
    assert committed_offset(kafka_broker.bootstrap, topic, f"{topic}-g") == ROWS  # ... every offset
    assert pq.read_metadata(out).num_rows == ROWS
