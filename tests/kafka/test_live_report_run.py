"""The live summary page of a real live run: jobs/live.yaml on the embedded broker, with poison
messages and a `live_report:` block; the page the executor writes agrees with the outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.kafka.util import produce, simulated, unique
from tests.report_html import external_references, plots, source_named
from tickflow.connectors.live_report import LiveReportRecorder
from tickflow.connectors.tick_codec import encode_tick_rows
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.live import LiveRunner
from tickflow.engine.live_view import LiveView
from tickflow.engine.loader import load_job

ROOT = Path(__file__).resolve().parents[2]
ROWS = 6_000

pytestmark = pytest.mark.slow


def test_live_run_page_matches_its_outputs(kafka_broker, tmp_path: Path, monkeypatch) -> None:
    topic = unique("live-report")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("TICKS_TOPIC", topic)
    monkeypatch.setenv("SIGNALS_TOPIC", unique("live-report-signals"))
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    good = encode_tick_rows(simulated(ROWS, symbols=3, seed=11))
    pairs = [*good[:100], (b"A", b"null"), (b"A", b"   "), *good[100:]]
    produce(kafka_broker.bootstrap, topic, pairs)

    job = compile_job(load_job(ROOT / "jobs/live.yaml",
                               overrides=[f"live_report.path={tmp_path / 'live.html'}",
                                          "live_report.bucket=30s"]))
    assert LiveReportRecorder.for_job(compile_job(load_job(ROOT / "jobs/live.yaml"))) is None
    recorder = LiveReportRecorder.for_job(job)
    assert recorder is not None and recorder.bucket_us == 30_000_000
    runner = LiveRunner(job, view=LiveView(list(job.signals), job.key, quiet=True),
                        max_seconds=120)
    runner.expected_messages = len(pairs)
    summary = runner.run()
    path = tmp_path / "live.html"
    assert path.exists()  # written by the executor at the end of the run
    recorder = runner.recorder  # what the executor fed, from its own loop
    assert recorder is not None

    out = pq.read_table(tmp_path / "live_features.parquet")
    data = recorder.data(summary)
    symbols = out["symbol"].to_numpy(zero_copy_only=False)
    assert data.ticks == ROWS == out.num_rows
    assert data.ticks_per_symbol == {s: int((symbols == s).sum()) for s in set(symbols)}
    for kind in ("buy", "sell", "regime_change"):
        fired = out[kind].to_numpy() == 1
        assert data.signal_totals[kind] == int(fired.sum())
        assert sum(data.signals_over_time[kind]) == int(fired.sum())
        for sym in set(symbols):
            got = data.signals_per_symbol.get(sym, {}).get(kind, 0)
            assert got == int((fired & (symbols == sym)).sum())
    assert data.dead_letters == {"not_an_object": 1, "malformed_json": 1}
    assert data.messages == len(pairs) and data.latency_ms and data.lag_messages

    page = path.read_text()
    assert not external_references(page)
    items = plots(page)
    over_time = source_named(items["signals_over_time"], "signals_over_time")
    assert np.sum(over_time["s0"]) == data.signal_totals[next(iter(data.signals_over_time))]
    assert "<td>not_an_object</td><td class=n>1</td>" in page
    assert "2 of 6,002 messages (0.03%) went to the dead-letter topic." in page
