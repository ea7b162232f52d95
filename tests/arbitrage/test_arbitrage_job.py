"""jobs/arbitrage.yaml offline (the default) and jobs/arbitrage_live.yaml through Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tickflow.connectors import binance_server, kraken_server
from tickflow.connectors.binance_server import BinanceExchangeServer
from tickflow.connectors.collector import Collector, CollectorSettings
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.embedded_broker import free_port
from tickflow.connectors.kraken_server import KrakenExchangeServer
from tickflow.connectors.tick_writers import KafkaTickWriter
from tickflow.engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ("BTC-USD", "ETH-USD")


def check_alerts(path: Path) -> list[dict]:
    alerts = pq.read_table(path).to_pylist()
    for alert in alerts:  # threshold 0, min duration 1 s, max age 2 s in both jobs
        assert alert["is_stale"] == 0 and alert["net_edge_bps"] > 0
        assert alert["edge_duration_s"] >= 1.0 and alert["arb_direction"] != "none"
        assert alert["quote_age_b_ms"] <= 2000.0
    return alerts


def test_offline_default_job_alerts_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    monkeypatch.setenv("ARB_SECONDS", "120")
    assert main([str(ROOT / "jobs" / "arbitrage.yaml")]) == 0
    out = capsys.readouterr().out
    alerts = check_alerts(tmp_path / "arbitrage_alerts.parquet")
    assert len(alerts) >= 2
    assert "arbitrage report: net edge above threshold" in out
    assert "buy_" in out  # the console sink printed the alerts
    lines = (tmp_path / "arbitrage_report.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 4  # 3 symbols x 4 thresholds
    assert (tmp_path / "arbitrage_report.png").stat().st_size > 10_000


def test_live_job_through_the_embedded_broker_from_loopback_servers(kafka_broker, tmp_path,
                                                                     monkeypatch):
    suffix = f"{os.getpid()}-{time.monotonic_ns()}"
    topics = {"binance": f"binance-ticker-{suffix}", "kraken": f"kraken-ticker-{suffix}"}
    market = {"duration_s": 40.0, "seed": 11}
    binance = BinanceExchangeServer(
        binance_server.synthetic_frames(PRODUCTS, **market), speed=8.0)
    kraken = KrakenExchangeServer(
        kraken_server.synthetic_frames(PRODUCTS, lag_ms=150, dislocations_per_min=10,
                                       dislocation_s=30, **market), speed=8.0, restamp=True)
    writers = {name: KafkaTickWriter(kafka_broker.bootstrap, topic)
               for name, topic in topics.items()}
    symbol_maps = {"binance": {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"}, "kraken": {}}

    dead = {name: DeadLetters(tmp_path / f"{name}-dead.jsonl", source=name) for name in topics}

    async def collect_both(servers: dict) -> dict:
        collectors = {name: Collector(
            CollectorSettings(exchange=name, url=server.url, products=PRODUCTS,
                              symbol_map=symbol_maps[name], subscribe_interval_s=0),
            writers[name], dead[name]) for name, server in servers.items()}
        tasks = {name: asyncio.create_task(c.run()) for name, c in collectors.items()}
        deadline = time.monotonic() + 60
        while not all(s.feed_exhausted.is_set() for s in servers.values()):
            assert time.monotonic() < deadline, "the feeds never ended"
            assert not any(t.done() for t in tasks.values())
            await asyncio.sleep(0.05)
        for name, server in servers.items():
            await asyncio.to_thread(server.wait_delivered, 30)
            collectors[name].stop()
        return {name: await asyncio.wait_for(t, 30) for name, t in tasks.items()}

    with binance, kraken:
        stats = asyncio.run(collect_both({"binance": binance, "kraken": kraken}))
        sent = {"binance": len(binance.sent_log), "kraken": len(kraken.sent_log)}
    for name, writer in writers.items():
        dead[name].close()
        assert dead[name].total == 0
        assert writer.close().startswith(f"produced {sent[name]:,} ticks")
        assert stats[name].ticks == sent[name] > 100

    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("BINANCE_TOPIC", topics["binance"])
    monkeypatch.setenv("KRAKEN_TOPIC", topics["kraken"])
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    job = str(ROOT / "jobs" / "arbitrage_live.yaml")
    assert main([job, "--quiet", "--set", "sources[0].end_when_idle_s=2",
                 "--set", "sources[1].end_when_idle_s=2"]) == 0
    alerts = check_alerts(tmp_path / "arbitrage_live_alerts.parquet")
    assert alerts, "a 30 s dislocation at 8x must alert"
    assert {a["symbol"] for a in alerts} <= set(PRODUCTS)
    assert all(a["exchange"] == "binance" and a["exchange_b"] == "kraken" for a in alerts)


@pytest.mark.parametrize(("exchange", "extra"), [
    ("binance", ["--symbol-map", "BTCUSDT=BTC-USD", "ETHUSDT=ETH-USD"]), ("kraken", [])])
def test_serve_and_collect_commands_work_offline(exchange, extra, tmp_path, capsys):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tickflow.engine.cli", "serve", exchange, "--port", str(port),
         "--speed", "max", "--synthetic-frames", "400", "--products", *PRODUCTS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        banner = server.stdout.readline()
        assert f"ws://127.0.0.1:{port}" in banner, banner + server.stderr.read()
        out = tmp_path / "ticks.jsonl"
        code = main(["collect", exchange, "--url", f"ws://127.0.0.1:{port}", "--products",
                     *PRODUCTS, *extra, "--jsonl", str(out), "--max-ticks", "100",
                     "--log-level", "WARNING"])
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert code == 0
    ticks = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(ticks) >= 100 and {t["symbol"] for t in ticks} == set(PRODUCTS)
    assert {t["exchange"] for t in ticks} == {exchange}
    assert f"{exchange} collector: " in capsys.readouterr().out


def test_a_bad_symbol_map_is_a_clear_message(capsys):
    assert main(["collect", "binance", "--symbol-map", "BTCUSDT", "--jsonl", "x.jsonl"]) == 1
    err = capsys.readouterr().err
    assert "--symbol-map expects VENUE=COMMON, found 'BTCUSDT'" in err and "Traceback" not in err


LIVE_SOURCES = """
name: direct-venues
mode: arbitrage
sources:
  - id: venue_a
    kind: binance
    url: {binance}
    products: [BTC-USD, ETH-USD]
    symbol_map: {{BTCUSDT: BTC-USD, ETHUSDT: ETH-USD}}
    max_ticks: 150
    linger_ms: 20
    dead_letter_path: {out}/binance-dead.jsonl
  - id: venue_b
    kind: kraken
    url: {kraken}
    products: [BTC-USD, ETH-USD]
    max_ticks: 150
    linger_ms: 20
    dead_letter_path: {out}/kraken-dead.jsonl
steps:
  - {{id: qb, kernel: quote_time, from: venue_b}}
  - {{id: qa, kernel: quote_time, from: venue_a}}
  - id: aligned
    operator: asof_join
    params: {{left: venue_a, right: venue_b, tolerance: 30s, suffixes: ["", "_b"]}}
  - {{id: spread, kernel: cross_venue_spread}}
sinks:
  - {{kind: parquet, from: aligned, path: {out}/aligned.parquet}}
"""


def test_binance_and_kraken_sources_feed_a_job_directly(tmp_path):
    # paced at the market's pace (about 80 quotes/s per venue): both venues quote the same
    # wall-clock minutes, as live (Binance stamps on receipt, Kraken restamps on send)
    market = {"duration_s": 10.0, "quotes_per_s": 40.0}
    with BinanceExchangeServer(binance_server.synthetic_frames(PRODUCTS, **market),
                               speed=1.0) as b, \
            KrakenExchangeServer(kraken_server.synthetic_frames(PRODUCTS, **market), speed=1.0,
                                 restamp=True) as k:
        job = tmp_path / "job.yaml"
        job.write_text(LIVE_SOURCES.format(binance=b.url, kraken=k.url, out=tmp_path))
        assert main([str(job), "--quiet"]) == 0
    rows = pq.read_table(tmp_path / "aligned.parquet").to_pandas()
    # max_ticks stops the collector; what the socket already holds is still delivered
    assert len(rows) >= 150 and set(rows.symbol) == set(PRODUCTS)
    assert set(rows.exchange) == {"binance"} and set(rows.exchange_b.dropna()) == {"kraken"}
    assert rows.net_edge_bps.notna().mean() > 0.5  # the first rows may precede Kraken's
