"""CPU a tick of the live source's decode, without a broker: JSON values to a tick batch.

Times, on one poll's worth of the drain's messages (``bench/live.py``'s simulated ticks, built
as confluent-kafka ``Message`` objects), the codec alone (``decode_tick_values``, and where they
exist each path it tries: msgspec, the Arrow reader) and the whole of
``decode_messages`` (values, offsets, send times, dead letters). Process CPU time, best of
``--repeat``, the variants taken in turn so that the machine's drift hits them alike. Runs
against whichever tickflow is on ``PYTHONPATH`` (a base worktree's too: a variant it lacks is
skipped).

    python bench/live_decode.py --messages 20000 --repeat 30
    python bench/live_decode.py --strings   # numbers sent as strings, as Coinbase does
    python bench/live_decode.py --nanoseconds --repeat 3
    python bench/live_decode.py --gil   # how much of each path runs without the GIL

``--gil`` runs each variant while a second thread counts in Python: the share of the variant's
wall time that thread got (against its rate alone) is the share of the decode that releases
the GIL, which is what a decode on a prefetch thread could overlap with the driver's own work.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any


def drain_values(rows: int, strings: bool = False, nanoseconds: bool = False) -> list[bytes]:
    """The values ``bench/live.py``'s drain produces (the same simulator and seed)."""
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource
    from tickflow.connectors.tick_codec import encode_tick_rows

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=14, seed=3),
                          RunContext(job_name="bench"))
    values = [v for batch in src.batches(None, 65_536) for _, v in encode_tick_rows(batch)]
    if nanoseconds:  # RFC 3339 with nanoseconds, as Go and Coinbase write them
        values = [v.replace(b'Z","symbol"', b'789Z","symbol"', 1) for v in values]
    if strings:
        values = [json.dumps({k: str(v) if isinstance(v, float | int) else v
                              for k, v in json.loads(v).items()}).encode() for v in values]
    return values


def messages_of(values: list[bytes], topic: str = "bench") -> list[Any]:
    from confluent_kafka import Message

    now_ms = int(time.time() * 1000)
    return [Message(topic=topic, partition=0, offset=i, key=b"K", value=v,
                    timestamp=(1, now_ms)) for i, v in enumerate(values)]


def variants(values: list[bytes], messages: list[Any]) -> dict[str, Callable[[], Any]]:
    from tickflow.connectors import tick_codec
    from tickflow.connectors.dead_letter import DeadLetters
    from tickflow.connectors.formats import tick_decoder
    from tickflow.connectors.kafka_decode import decode_messages

    out: dict[str, Callable[[], Any]] = {
        "decode_tick_values": lambda: tick_codec.decode_tick_values(values)}
    try:  # msgspec's path, where the checkout has it
        from tickflow.connectors.tick_json_fast import decode_clean

        out["msgspec path"] = lambda: decode_clean(values)
    except ImportError:
        pass
    arrow = getattr(tick_codec, "decode_tick_values_arrow", None)
    if arrow is not None:
        out["arrow reader path"] = lambda: arrow(values)
        read = getattr(tick_codec, "_read", None)
        if read is not None:  # the C++ reader alone (its GIL-free part)
            out["  its read_json"] = lambda: read(values)
    decoder = tick_decoder("json", "bench")
    dead = DeadLetters(None, source="bench")
    out["decode_messages"] = lambda: decode_messages(messages, decoder, dead, True)
    return out


class Spinner:
    """A Python thread counting as fast as the GIL lets it (``--gil``)."""

    def __init__(self) -> None:
        import threading

        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        n = 0
        while self.running:
            n += 1
            self.count = n

    def stop(self) -> None:
        self.running = False
        self.thread.join()


def gil_held(runs: dict[str, Callable[[], Any]], repeat: int,
             n: int) -> dict[str, tuple[float, float, float, float]]:
    """Per variant (medians of ``repeat``): wall µs a tick alone; beside the spinner, wall µs
    a tick, the share of that wall time the spinner ran (1.0: the variant never kept it
    waiting, i.e. ran without the GIL), and the µs a tick the variant held the GIL (its wall
    less the spinner's run time; the spinner's rate is measured alone just before)."""
    import statistics

    alone: dict[str, list[float]] = {name: [] for name in runs}
    beside: dict[str, list[float]] = {name: [] for name in runs}
    share: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            alone[name].append(time.perf_counter() - t0)
    spinner = Spinner()
    try:
        for _ in range(repeat):
            for name, run in runs.items():
                c0, t0 = spinner.count, time.perf_counter()  # the spinner alone
                time.sleep(0.02)
                rate = (spinner.count - c0) / (time.perf_counter() - t0)
                c0, t0 = spinner.count, time.perf_counter()
                run()
                wall = time.perf_counter() - t0
                beside[name].append(wall)
                share[name].append(min(1.0, (spinner.count - c0) / rate / wall))
    finally:
        spinner.stop()
    med = statistics.median
    return {name: (1e6 * med(alone[name]) / n, 1e6 * med(beside[name]) / n, med(share[name]),
                   1e6 * med([w * (1 - f) for w, f in zip(beside[name], share[name],
                                                          strict=True)]) / n)
            for name in runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000, help="messages a poll (the drain's)")
    ap.add_argument("--repeat", type=int, default=30, help="timed rounds; the best is shown")
    ap.add_argument("--strings", action="store_true", help="numbers sent as JSON strings")
    ap.add_argument("--nanoseconds", action="store_true",
                    help="timestamps with 9 fractional digits")
    ap.add_argument("--gil", action="store_true",
                    help="the share of each path's wall time a Python thread beside it runs")
    args = ap.parse_args()
    import tickflow

    values = drain_values(args.messages, args.strings, args.nanoseconds)
    messages = messages_of(values)
    runs = variants(values, messages)
    if args.gil:
        import hashlib
        import sys

        # a control that runs without the GIL throughout: the share the spinner gets beside
        # it is what the machine's other load leaves (on a busy 2-core machine, well under 100%)
        blob = b"".join(values) * 2
        runs["control: sha256"] = lambda: hashlib.sha256(blob).digest()

        print(f"# {tickflow.__file__}: {len(values):,} values; switch interval "
              f"{1e3 * sys.getswitchinterval():.0f} ms")
        for name, (alone, beside, share, held) in gil_held(runs, args.repeat,
                                                          len(values)).items():
            print(f"{name:>20}: wall {alone:.3f} µs a tick alone; beside a counting Python "
                  f"thread {beside:.3f}, which ran {100 * share:.0f}% of it; GIL held "
                  f"{held:.3f} µs a tick")
        return
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    size = sum(map(len, values)) / len(values)
    print(f"# {tickflow.__file__}: {len(values):,} values, {size:.0f} bytes each"
          f"{', numbers as strings' if args.strings else ''}"
          f"{', nanosecond timestamps' if args.nanoseconds else ''}")
    for name, seconds in best.items():
        print(f"{name:>20}: {1e6 * seconds / len(values):.3f} µs CPU a tick "
              f"(best of {args.repeat})")


if __name__ == "__main__":
    main()
