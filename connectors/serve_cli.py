"""``run-job serve``: one exchange's market-data WebSocket protocol on loopback, from the shell.

Why a module of its own: the command picks a venue's server, and every venue's server builds on
``exchange_server``; keeping the command here keeps that dependency one-way.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Sequence

from tickflow.connectors.coinbase import DEFAULT_PRODUCTS
from tickflow.connectors.coinbase_server import (
    CoinbaseExchangeServer,
    load_frames,
    synthetic_frames,
)
from tickflow.connectors.exchange_server import (
    INJECTION_KINDS,
    Faults,
    LoopbackServer,
    MarketFrame,
    parse_speed,
)


def _int_set(text: str) -> frozenset[int]:
    return frozenset(int(x) for x in text.split(",") if x.strip())


def _injections(items: list[str]) -> dict[int, str]:
    out = {}
    for item in items:
        index, _, kind = item.partition(":")
        out[int(index)] = kind
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run-job serve",
                                description="Serve an exchange's market-data WebSocket "
                                            "protocol on loopback, replaying recorded frames.")
    p.add_argument("exchange", choices=("coinbase", "binance", "kraken"), nargs="?",
                   default="coinbase")
    p.add_argument("--frames", help="recorded server frames, JSON Lines (.gz allowed); "
                                    "default: a synthetic ticker feed")
    p.add_argument("--products", nargs="+", default=None,
                   help="products of the synthetic feed (default: the venue's)")
    p.add_argument("--synthetic-frames", type=int, default=10_000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--speed", default="1x", help="1x (recorded pace), 10x, ... or max")
    p.add_argument("--loop", action="store_true",
                   help="replay forever (timestamps restamped to now)")
    p.add_argument("--restamp", action="store_true", help="stamp frames with the send time")
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument("--disconnect-after", type=int)
    p.add_argument("--silence-after", type=int)
    p.add_argument("--heartbeats-stop-after", type=int)
    p.add_argument("--skip-seq", type=_int_set, default=frozenset())
    p.add_argument("--duplicate-seq", type=_int_set, default=frozenset())
    p.add_argument("--inject", action="append", default=[], metavar="INDEX:KIND",
                   help=f"inject a faulty message before market frame INDEX; KIND in "
                        f"{', '.join(INJECTION_KINDS)}")
    p.add_argument("--numbers-as-json", action="store_true")
    p.add_argument("--send-delay", type=float, default=0.0)
    p.add_argument("--faulty-connections", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        speed = parse_speed(args.speed)
        faults = Faults(disconnect_after=args.disconnect_after, silence_after=args.silence_after,
                        heartbeats_stop_after=args.heartbeats_stop_after,
                        skip_sequence=args.skip_seq, duplicate_sequence=args.duplicate_seq,
                        inject=_injections(args.inject), numbers_as_json=args.numbers_as_json,
                        send_delay_s=args.send_delay,
                        faulty_connections=args.faulty_connections)
        if args.exchange != "coinbase":
            frames, server_class = _venue_frames(args)
        else:
            server_class = CoinbaseExchangeServer
            frames = (load_frames(args.frames) if args.frames else
                      synthetic_frames(args.products or DEFAULT_PRODUCTS, args.synthetic_frames))
    except (OSError, ValueError) as exc:
        print(f"serve: {exc}", flush=True)
        return 2
    options = {"restamp": args.restamp or args.loop} if args.exchange != "binance" else {}
    server = server_class(frames, host=args.host, port=args.port, speed=speed,
                          loop=args.loop, heartbeat_interval_s=args.heartbeat_interval,
                          faults=faults, **options)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        print(f"serving the {args.exchange} protocol on {server.url} "
              f"({len(frames):,} frames, speed {args.speed}); Ctrl+C stops", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except OSError as exc:  # the port is taken, or the host cannot be bound: one line
        print(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
              f"(choose another --port)", file=sys.stderr, flush=True)
        return 1
    print(f"served {server.connection_count} connection(s), {server.sent_frames:,} frames, "
          f"{len(server.sent_log):,} ticker entries", flush=True)
    return 0


def _venue_frames(args: argparse.Namespace) -> tuple[list[MarketFrame], type[LoopbackServer]]:
    """Binance or Kraken: recorded frames, or the multi-venue simulator's quotes."""
    module = importlib.import_module(f"tickflow.connectors.{args.exchange}_server")
    server_class = getattr(module, f"{args.exchange.capitalize()}ExchangeServer")
    if args.frames:
        return module.load_frames(args.frames), server_class
    products = args.products or ["BTC-USD", "ETH-USD", "SOL-USD"]
    seconds = max(1.0, args.synthetic_frames / 4.0 / len(products))  # 4 quotes/s per product
    # the same simulated market as jobs/arbitrage.yaml: Kraken lags and dislocates
    extra = {"lag_ms": 150.0, "dislocations_per_min": 2.0} if args.exchange == "kraken" else {}
    return module.synthetic_frames(products, duration_s=seconds, **extra), server_class
