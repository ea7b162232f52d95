"""jobs/live.yaml and jobs/export.yaml end to end: a simulated capture replayed through a real
embedded broker, features equal to a research run over the same ticks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.kafka.util import read_topic, unique
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job

ROOT = Path(__file__).resolve().parents[2]
ROWS = 30_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "sim.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=4, seed=5)
    return path


def research_features(capture: Path, tmp_path: Path) -> Path:
    """The same features by the research executor (2 workers, big morsels)."""
    out = tmp_path / "research.parquet"
    job = tmp_path / "research.yaml"
    job.write_text(f"""
name: research-check
mode: research
sources: [{{kind: parquet, path: {capture}}}]
include: [{ROOT / 'jobs/features/core.yaml'}]
signals:
  buy: zscore < -2.0 and rsi < 30
  sell: zscore > 2.0 and rsi > 70
  regime_change: cusum_alarm == 1
sinks: [{{kind: parquet, path: {out}}}]
executor: {{workers: 2, morsel_rows: 65536}}
""")
    run_local(compile_job(load_job(job)))
    return out


def test_live_replay_prints_signals_writes_them_and_matches_research(
        capture: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    code = main([str(ROOT / "jobs/live.yaml"), "--replay", str(capture), "--speed", "max"])
    out = capsys.readouterr().out
    assert code == 0, out
    live = pq.read_table(tmp_path / "out/live_features.parquet")
    assert live.num_rows == ROWS
    # signals printed as in the seed: label, symbol, price, z-score, RSI, CUSUM
    signal_rows = live.filter((live["buy"].cast("int64").to_numpy() == 1)
                              | (live["sell"].cast("int64").to_numpy() == 1)
                              | (live["regime_change"].cast("int64").to_numpy() == 1))
    assert signal_rows.num_rows > 0
    first = signal_rows.slice(0, 1).to_pylist()[0]
    label = "BUY" if first["buy"] else "SELL" if first["sell"] else "REGIME CHANGE"
    assert f"{label:<13} {first['symbol']:<10} price={first['price']:,.6g}  " \
           f"z={first['zscore']:+.2f}  rsi={first['rsi']:.1f}" in out
    # totals
    assert f"ticks: {ROWS:,} of {ROWS:,} messages" in out
    counts = {s: int(live[s].cast("int64").to_numpy().sum()) for s in
              ("buy", "sell", "regime_change")}
    assert f"signals: buy={counts['buy']:,}, sell={counts['sell']:,}, " \
           f"regime_change={counts['regime_change']:,}" in out
    assert "dead letters: 0" in out
    assert "tick-to-signal latency: p50 " in out and "p99.9 " in out
    assert f"kafka: wrote {signal_rows.num_rows:,} messages to topic tickflow-signals" in out

    research = pq.read_table(research_features(capture, tmp_path))
    assert research.column_names == live.column_names
    for name in research.column_names:
        a, b = research[name].to_numpy(), live[name].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert (a == b).all(), name


def test_export_fills_the_feature_topic(kafka_broker, capture: Path, tmp_path: Path,
                                        monkeypatch, capsys) -> None:
    ticks_topic, features_topic = unique("ticks"), unique("features")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("TICKS_TOPIC", ticks_topic)
    monkeypatch.setenv("FEATURES_TOPIC", features_topic)
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    code = main([str(ROOT / "jobs/export.yaml"), "--replay", str(capture), "--quiet"])
    assert code == 0, capsys.readouterr()
    msgs = read_topic(kafka_broker.bootstrap, features_topic, expected=ROWS)
    assert len(msgs) == ROWS
    job = compile_job(load_job(ROOT / "jobs/export.yaml"))
    first = json.loads(msgs[0].value())
    assert list(first) == job.output_columns  # every tick and feature column, in order
    assert {"zscore", "rsi", "cusum_alarm", "macd", "var"} <= set(first)
    assert msgs[0].key().decode() == first["symbol"]
    seq = {(json.loads(m.value())["symbol"], json.loads(m.value())["sequence"]) for m in msgs}
    assert len(seq) == ROWS  # one message per tick, none twice
