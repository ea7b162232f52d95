"""``tickflow-collect`` (and ``run-job collect``): the collector's command line.

    tickflow-collect [coinbase] [--products BTC-USD ...] (-k BOOTSTRAP | -F -o FILE | --jsonl FILE
                                                          | -S FILE.db)
    tickflow-collect -SK FILE.db -k BOOTSTRAP [--speed max]   (replay a SQLite file into Kafka)
    run-job collect coinbase|binance|kraken ...     (the same; the venue is a registered
                                                     connectors.exchange_protocol)
    run-job collect coinbase --replay FILE --speed 10x|max -k BOOTSTRAP

Kept apart from :mod:`tickflow.connectors.collector` so the library (the job sources run the
collector too) carries no argument parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tickflow.connectors.coinbase_auth import CoinbaseCredentials
from tickflow.connectors.collector import (
    DEFAULT_TOPIC,
    Collector,
    CollectorSettings,
    CollectorStats,
)
from tickflow.connectors.dead_letter import DeadLetters
from tickflow.connectors.exchange_protocol import get_protocol, protocol_names
from tickflow.connectors.tick_writers import (
    JsonlTickWriter,
    KafkaTickWriter,
    ParquetTickWriter,
    TickWriter,
)
from tickflow.engine.errors import SourceError, TickflowError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tickflow-collect",
        description="Collect an exchange's tickers (Coinbase, Binance, Kraken) as canonical "
                    "ticks into Kafka, Parquet or JSON Lines; or replay a capture into Kafka.")
    p.add_argument("exchange", nargs="?", choices=protocol_names(), default="coinbase")
    p.add_argument("--products", nargs="+", default=None, metavar="PRODUCT",
                   help="products in common naming, e.g. BTC-USD (default: the venue's list)")
    p.add_argument("--symbol-map", nargs="+", default=[], metavar="VENUE=COMMON",
                   help="explicit venue symbol -> common symbol, e.g. BTCUSDT=BTC-USD (states "
                        "that USDT is taken as USD; never assumed)")
    p.add_argument("--trades", action="store_true",
                   help="also subscribe trades (Binance trade, Kraken trade)")
    p.add_argument("--market-trades", action="store_true", help="also subscribe market_trades")
    p.add_argument("--level2", action="store_true", help="also subscribe level2 (MB frames)")
    p.add_argument("--url", default=None,
                   help="WebSocket endpoint (default: the venue's production endpoint)")
    out = p.add_argument_group("output (choose one)")
    out.add_argument("-k", "--kafka", metavar="BOOTSTRAP",
                     help="Kafka bootstrap servers, or 'embedded' for a broker on loopback")
    out.add_argument("--topic", default=None, help=f"default {DEFAULT_TOPIC} (EXCHANGE-ticker)")
    out.add_argument("-f", "--format", choices=("json", "avro"), default="json",
                     help="Kafka message format (avro: Confluent wire format, needs "
                          "--schema-registry)")
    out.add_argument("--schema-registry", metavar="URL",
                     default=os.environ.get("SCHEMA_REGISTRY_URL"),
                     help="Schema Registry for -f avro (default: $SCHEMA_REGISTRY_URL)")
    out.add_argument("-F", "--parquet", action="store_true", help="write Parquet to -o FILE")
    out.add_argument("-o", "--output", metavar="FILE")
    out.add_argument("--jsonl", metavar="FILE", help="write JSON Lines to FILE")
    out.add_argument("-S", "--sqlite", metavar="FILE",
                     help="write ticks to a SQLite file (table ticks; appended to)")
    out.add_argument("--flush-rows", type=int, default=10_000, help="Parquet row group rows")
    out.add_argument("--flush-seconds", type=float, default=5.0, help="Parquet flush interval")
    out.add_argument("--dead-letters", metavar="FILE",
                     help="dead-letter JSON Lines file (default: beside the output; with "
                          "Kafka: topic TOPIC-dead-letters)")
    run = p.add_argument_group("run")
    run.add_argument("--heartbeat-timeout", type=float, default=10.0, metavar="S")
    run.add_argument("--max-failures", type=int, default=None, metavar="N",
                     help="give up after N consecutive failed connects (default: never)")
    run.add_argument("--max-ticks", type=int, default=None)
    run.add_argument("--duration", type=float, default=None, metavar="S")
    run.add_argument("--replay", metavar="FILE", help="replay a Parquet/JSONL capture into -k")
    run.add_argument("-SK", "--sqlite-to-kafka", metavar="FILE",
                     help="replay a -S SQLite file into -k (the seed's -SK); --speed applies")
    run.add_argument("--speed", default="1x", help="replay speed: 1x, 10x, ... or max")
    run.add_argument("--log-level", default="INFO")
    return p


def _writer(args: argparse.Namespace) -> tuple[TickWriter, DeadLetters]:
    chosen = [name for name, on in (("-k", args.kafka), ("-F/-o", args.parquet or args.output),
                                    ("--jsonl", args.jsonl), ("-S", args.sqlite)) if on]
    if len(chosen) != 1:
        msg = ("collect: choose exactly one output: -k BOOTSTRAP, -F -o FILE, --jsonl FILE or "
               "-S FILE"
               + (f" (found {', '.join(chosen)})" if chosen else ""))
        raise SourceError(msg)
    if args.kafka:
        kafka = KafkaTickWriter(args.kafka, args.topic, encode=_encoder(args))
        forward = (None if args.dead_letters
                   else kafka.dead_letter_forward(f"{args.topic}-dead-letters"))
        writer: TickWriter = kafka
        return writer, DeadLetters(args.dead_letters, forward=forward, source=args.exchange)
    if args.sqlite:
        from tickflow.connectors.sqlite_ticks import SqliteTickWriter

        path = Path(args.sqlite)
        writer = SqliteTickWriter(path, flush_s=min(args.flush_seconds, 1.0))
    elif args.jsonl:
        path = Path(args.jsonl)
        writer = JsonlTickWriter(path)
    else:
        if not args.output:
            raise SourceError("collect: -F needs -o FILE")
        path = Path(args.output)
        if not args.parquet and path.suffix not in (".parquet", ".pq"):
            msg = f"collect: -o {path}: add -F for Parquet or use --jsonl FILE for JSON Lines"
            raise SourceError(msg)
        writer = ParquetTickWriter(path, flush_rows=args.flush_rows,
                                   flush_s=args.flush_seconds)
    dead = Path(args.dead_letters) if args.dead_letters else \
        path.with_name(path.name + ".dead-letters.jsonl")
    return writer, DeadLetters(dead, source=args.exchange)


def _encoder(args: argparse.Namespace) -> Any:
    """The tick encoder for ``-f``: None (JSON) or Avro against ``--schema-registry``."""
    if args.format != "avro":
        return None
    if not args.schema_registry:
        raise SourceError("collect: -f avro needs --schema-registry URL (or "
                          "SCHEMA_REGISTRY_URL)")
    from tickflow.connectors.avro_codec import AvroTickEncoder

    return AvroTickEncoder(args.schema_registry, args.topic).encode_dict


def _replay(args: argparse.Namespace) -> int:
    from tickflow.connectors.embedded_broker import EMBEDDED
    from tickflow.connectors.replay import replay_to_kafka

    if not args.kafka:
        raise SourceError("collect: --replay needs -k BOOTSTRAP (the Kafka to replay into)")
    if args.kafka.strip().lower() == EMBEDDED:
        msg = ("collect: --replay into -k embedded would lose every tick when the collector "
               "stops (the embedded broker keeps them in memory); run `run-job jobs/live.yaml "
               "--replay FILE` for an offline demo, or give a running broker's bootstrap")
        raise SourceError(msg)
    from tickflow.connectors.kafka_client import wait_for_broker

    if not Path(args.replay).is_file():
        raise SourceError(f"collect: no capture at {args.replay}")
    wait_for_broker(args.kafka, timeout_s=10, what="collect replay")
    count = replay_to_kafka(args.replay, args.kafka, args.topic, args.speed)
    print(f"replayed {count:,} ticks from {args.replay} into {args.kafka} topic {args.topic}")
    return 0


async def _collect(collector: Collector) -> CollectorStats:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, collector.stop)
    return await collector.run()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.topic = args.topic or f"{args.exchange}-ticker"
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.sqlite_to_kafka:
            if args.replay:
                raise SourceError("collect: give either --replay FILE or -SK FILE")
            args.replay = args.sqlite_to_kafka
        if args.replay:
            return _replay(args)
        protocol = get_protocol(args.exchange)
        channels = list(protocol.default_channels)
        channels += ["market_trades"] * args.market_trades + ["level2"] * args.level2
        channels += ["trade"] * args.trades
        symbol_map = {}
        for item in args.symbol_map:
            venue, sep, common = item.partition("=")
            if not sep or not venue or not common:
                msg = f"collect: --symbol-map expects VENUE=COMMON, found {item!r}"
                raise SourceError(msg)
            symbol_map[venue] = common
        settings = CollectorSettings(
            exchange=args.exchange, url=args.url,
            products=tuple(args.products) if args.products else None,
            channels=tuple(channels), symbol_map=symbol_map,
            heartbeat_timeout_s=args.heartbeat_timeout, max_failures=args.max_failures,
            max_ticks=args.max_ticks, duration_s=args.duration,
            credentials=CoinbaseCredentials.from_env() if args.exchange == "coinbase"
            else None)
        writer, dead_letters = _writer(args)
        collector = Collector(settings, writer, dead_letters)
        try:
            stats = asyncio.run(_collect(collector))
        finally:
            closed = writer.close()
            dead_letters.close()
        print(closed, flush=True)
        print(stats.summary(), flush=True)
        if dead_letters.total:
            print(dead_letters.summary(), flush=True)
        return 0
    except TickflowError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
