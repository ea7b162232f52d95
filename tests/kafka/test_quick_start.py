"""The seed's quick start, offline: the Coinbase collector (pointed at the loopback Coinbase
server) streams tickers into Kafka, then ``run-job jobs/live.yaml`` turns them into signals."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.kafka.util import read_topic, unique
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.engine import cli

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
TICKS = 3_000

pytestmark = pytest.mark.slow


def test_collector_feeds_kafka_and_the_live_job_prints_signals(kafka_broker, tmp_path,
                                                               monkeypatch, capsys):
    topic = unique("coinbase-ticker")
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, TICKS), heartbeat_interval_s=0.2,
                                speed=0) as server:
        code = cli.main(["collect", "coinbase", "--url", server.url, "--products", *PRODUCTS,
                         "-k", kafka_broker.bootstrap, "--topic", topic,
                         "--max-ticks", str(TICKS), "--log-level", "WARNING"])
        sent = len(server.sent_ticks)
    assert code == 0
    collected = read_topic(kafka_broker.bootstrap, topic, TICKS)
    assert len(collected) >= TICKS and len(collected) <= sent

    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("TICKS_TOPIC", topic)
    monkeypatch.setenv("SIGNALS_TOPIC", unique("signals"))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    capsys.readouterr()
    code = cli.main([str(ROOT / "jobs/live.yaml"), "--set", "sources[0].end_when_idle_s=2"])
    out = capsys.readouterr().out
    assert code == 0, out
    features = pq.read_table(tmp_path / "out/live_features.parquet")
    assert features.num_rows == len(collected)  # every collected tick, once
    assert set(features["symbol"].to_pylist()) == set(PRODUCTS)
    flagged = sum(int(features[s].cast("int64").to_numpy().sum())
                  for s in ("buy", "sell", "regime_change"))
    assert flagged > 0
    printed = [line for line in out.splitlines()
               if line.startswith(("BUY ", "SELL ", "REGIME CHANGE"))]
    assert len(printed) == flagged, out[-2000:]
