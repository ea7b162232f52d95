"""``tf.stream`` on a live job: batches arrive while the job runs on a real broker, and leaving
the loop stops it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tickflow as tf
from tests.conftest import ROOT
from tests.kafka.util import produce_ticks, simulated, unique

pytestmark = pytest.mark.slow


def test_stream_a_live_job_and_stop_by_leaving_the_loop(kafka_broker, tmp_path: Path) -> None:
    topic = unique("api-stream")
    ticks = simulated(3_000, symbols=2, seed=4)
    produce_ticks(kafka_broker.bootstrap, topic, ticks)
    job = tf.load_job(ROOT / "jobs" / "live.yaml", set={
        "sources[0].bootstrap": kafka_broker.bootstrap, "sources[0].topic": topic,
        "sources[0].group_id": unique("api-group"),
        "sources[0].dead_letter_path": str(tmp_path / "dead.jsonl"),
        "sources[0].batch_size": 500, "state.path": str(tmp_path / "state")})
    rows, batches = 0, 0
    start = time.monotonic()
    for batch in tf.stream(job, max_seconds=120, workers=1):
        assert "zscore" in batch.schema.names and "buy" in batch.schema.names
        rows += batch.num_rows
        batches += 1
        if rows >= 3_000:
            break  # a live job never ends by itself: leaving the loop stops it
    assert rows == 3_000 and batches >= 6
    assert time.monotonic() - start < 100
    with pytest.raises(tf.TickflowError, match="pass max_seconds="):
        tf.run(job)
