"""Graphs live, on the embedded Kafka broker: jobs/arbitrage_live.yaml as the README runs it
(no end_when_idle_s: it prints alerts as they happen and Ctrl+C keeps them), and a live
multi-timeframe job checkpointed to rocksdb, SIGKILLed and resumed, whose output equals the
research run over the same ticks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.kafka.util import unique
from tests.runtime.test_graph_crash_recovery import _comparable
from tests.state.test_crash_recovery import assert_tables_equal
from tickflow.connectors.replay import replay_to_kafka
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main

MTF = """\
name: live-mtf
mode: {mode}
sources:
  - id: ticks
    kind: {source}
steps:
  - {{id: bars, operator: resample_ohlc, params: {{interval: 10s}}}}
  - {{id: bar_ema, kernel: ema, input: close, params: {{span: 5}}, output: bar_ema}}
  - {{id: with_bars, operator: asof_join, from: ticks, params: {{right: bars}}}}
  - {{kernel: log_returns}}
  - {{kernel: rolling_zscore, params: {{window: 50}}}}
signals:
  up: crosses_above(zscore, 1.0)
sinks:
  - {{kind: parquet, path: out/main.parquet, row_group_rows: 4096}}
state:
  backend: {backend}
  checkpoint: {{every: 200ms}}
executor: {{workers: 1, morsel_rows: 4000}}
"""

KAFKA = """kafka
    bootstrap: ${KAFKA_BOOTSTRAP}
    topic: ${TICKS_TOPIC}
    group_id: ${GROUP}
    batch_size: 4000
    linger_ms: 5
    end_when_idle_s: 3"""

ROWS = 40_000


def _env(broker, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP": broker.bootstrap,
            **extra}


def test_arbitrage_live_prints_alerts_as_they_happen_and_ctrl_c_keeps_them(
        kafka_broker, tmp_path: Path) -> None:
    topics = {"BINANCE_TOPIC": unique("binance"), "KRAKEN_TOPIC": unique("kraken")}
    for seed, topic in enumerate(topics.values(), start=1):
        ticks = tmp_path / f"venue{seed}.parquet"
        write_simulated_parquet(ticks, rows=20_000, symbols=3, seed=seed, ticks_per_second=100)
        replay_to_kafka(ticks, kafka_broker.bootstrap, topic, "max")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickflow.engine.cli", str(ROOT / "jobs" / "arbitrage_live.yaml")],
        cwd=tmp_path, env=_env(kafka_broker, OUT_DIR=str(out), **topics),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while not printed:  # an alert reaches the terminal while the job still runs
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        line = proc.stdout.readline()
        if "arb_direction=" in line:
            printed.append(line)
    time.sleep(1.0)  # it has consumed everything by now and waits for more (no idle end)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    alerts = pq.read_table(out / "arbitrage_live_alerts.parquet")
    assert alerts.num_rows >= len(printed) + rest.count("arb_direction=") >= 1
    first = alerts.slice(0, 1).to_pylist()[0]
    assert f"symbol={first['symbol']}" in printed[0]  # the printed alert is the one kept
    assert first["net_edge_bps"] > 0 and first["edge_duration_s"] >= 1.0
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    assert leftovers == []


@pytest.fixture(scope="module")
def mtf_ticks(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("live_mtf")
    write_simulated_parquet(d / "ticks.parquet", rows=ROWS, symbols=5, seed=4,
                            ticks_per_second=100)
    topic = unique("live-mtf")
    assert replay_to_kafka(d / "ticks.parquet", kafka_broker.bootstrap, topic, "max") == ROWS
    return d / "ticks.parquet", topic


def _research_reference(tmp_path: Path, ticks: Path) -> pa.Table:
    d = tmp_path / "research"
    d.mkdir()
    source = f"parquet\n    path: {ticks}"
    (d / "job.yaml").write_text(MTF.format(mode="research", source=source, backend="memory"))
    with contextlib.chdir(d):
        assert main(["run", "job.yaml", "--quiet"]) == 0
    return pq.read_table(d / "out" / "main.parquet")


def _checkpointed_rows(cwd: Path) -> int:
    import json

    d = cwd / ".tickflow" / "state" / "live-mtf" / "checkpoints"
    rows = 0
    for p in d.glob("0*") if d.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            rows = max(rows, json.loads((p / "MANIFEST.json").read_text())["rows"])
    return rows


@pytest.mark.slow
def test_a_live_multi_timeframe_job_with_checkpoints_survives_sigkill(
        kafka_broker, mtf_ticks: tuple[Path, str], tmp_path: Path) -> None:
    ticks, topic = mtf_ticks
    reference = _research_reference(tmp_path, ticks)
    cwd = tmp_path / "live"
    cwd.mkdir()
    (cwd / "job.yaml").write_text(MTF.format(mode="live", source=KAFKA, backend="rocksdb"))
    env = _env(kafka_broker, TICKS_TOPIC=topic, GROUP=unique("g"))
    cmd = [sys.executable, "-m", "tickflow.engine.cli", "run", "job.yaml"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _checkpointed_rows(cwd) < 8_000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert "resumed from checkpoint" in done.stderr.decode()
    assert_tables_equal(_comparable(reference.replace_schema_metadata(None)),
                        _comparable(pq.read_table(cwd / "out" / "main.parquet")))
