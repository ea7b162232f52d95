"""How fast the Coinbase collector parses and writes ticks, beside the floor of plain JSON.

    python bench/collector.py [--frames 100000] [--recorded FILE]

1. Parsing: ``tickflow.connectors.coinbase.parse_frame`` on real ticker frames (the recorded
   capture when given, else synthetic ones) against ``json.loads`` alone on the same frames,
   the floor any Python parser of this feed pays.
2. End to end on loopback: ``run-job serve coinbase`` (a separate process, synthetic ticker feed
   at max speed) -> the collector -> Parquet, as ticks/s and the collector's CPU time per tick.
   The feed is Coinbase-sized per message (one ticker per frame), so this is the rate one
   collector process sustains, far above the live feed's rate for 14 products.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tickflow.connectors.coinbase import parse_frame  # noqa: E402
from tickflow.connectors.coinbase_server import synthetic_frames  # noqa: E402
from tickflow.connectors.collector import Collector, CollectorSettings  # noqa: E402
from tickflow.connectors.dead_letter import DeadLetters  # noqa: E402
from tickflow.connectors.embedded_broker import free_port  # noqa: E402
from tickflow.connectors.tick_writers import ParquetTickWriter  # noqa: E402


def ticker_texts(count: int, recorded: str | None) -> list[str]:
    if recorded:
        with gzip.open(recorded, "rt", encoding="utf-8") as f:
            texts = [line.strip() for line in f if '"channel":"ticker"' in line]
    else:
        texts = [json.dumps(f.message) for f in synthetic_frames(count=1_000)]
    return (texts * (count // len(texts) + 1))[:count]


def bench_parse(texts: list[str]) -> None:
    start = time.perf_counter()
    for text in texts:
        json.loads(text)
    floor = time.perf_counter() - start
    start = time.perf_counter()
    ticks = sum(len(parse_frame(text).ticks) for text in texts)
    ours = time.perf_counter() - start
    n = len(texts)
    print(f"parse {n:,} ticker frames ({ticks:,} ticks):")
    for label, seconds in (("json.loads only (floor)", floor),
                           ("parse_frame -> canonical tick", ours)):
        print(f"  {label:<30} {n / seconds:>12,.0f} frames/s  {seconds / n * 1e6:6.2f} us/frame")


def bench_loopback(count: int) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tickflow.engine.cli", "serve", "coinbase", "--port", str(port),
         "--speed", "max", "--synthetic-frames", str(count)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        server.stdout.readline()  # the banner: listening
        with tempfile.TemporaryDirectory() as tmp:
            writer = ParquetTickWriter(Path(tmp) / "ticks.parquet", flush_rows=50_000)
            collector = Collector(CollectorSettings(url=f"ws://127.0.0.1:{port}",
                                                    max_ticks=count, subscribe_interval_s=0),
                                  writer, DeadLetters())
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            stats = asyncio.run(collector.run())
            writer.close()
            wall = time.perf_counter() - start
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"loopback server -> collector -> Parquet, {stats.ticks:,} ticks:")
    print(f"  {stats.ticks / wall:,.0f} ticks/s end to end (the server process shares the 2 "
          f"cores); collector CPU {cpu / stats.ticks * 1e6:.1f} us/tick")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--recorded", help="server_frames_*.jsonl.gz to take ticker frames from")
    args = p.parse_args()
    bench_parse(ticker_texts(args.frames, args.recorded))
    bench_loopback(min(args.frames, 50_000))


if __name__ == "__main__":
    main()
