"""The quality stage's CPU for a batch of dropped ticks written to a dead-letter file.

A feed that replays its last minutes after a reconnect sends ticks earlier than what the job
already has: the stage drops them as out of order and writes each to the dead-letter file on
the thread that processes ticks. This times ``QualityStage.check`` (CPU of the calling thread,
and wall) for a batch of ``--rows`` simulated ticks of which all, half or none are dropped,
with a dead-letter file, after one accepted batch.

    python bench/quality_dead_letters.py --rows 20000 --repeat 5
    python bench/quality_dead_letters.py --small     # live batches of 100 ticks, a few dropped
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # PYTHONPATH first: A/B runs point it at a base


def ticks(rows: int) -> pa.RecordBatch:
    from tickflow.connectors.simulator import write_simulated_parquet

    with tempfile.TemporaryDirectory() as d:
        import pyarrow.parquet as pq

        path = Path(d) / "t.parquet"
        write_simulated_parquet(path, rows=rows, symbols=4, seed=7, ticks_per_second=200)
        return pq.read_table(path).combine_chunks().to_batches()[0]


def shifted(batch: pa.RecordBatch, back_us: np.ndarray) -> pa.RecordBatch:
    ts = batch.column("timestamp")
    us = ts.cast(pa.int64()).to_numpy() - back_us
    cols = [pa.array(us, type=pa.int64()).cast(ts.type) if n == "timestamp" else batch.column(n)
            for n in batch.schema.names]
    return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


def one(batch: pa.RecordBatch, share: float, directory: Path) -> tuple[float, float, int]:
    """(CPU ms, wall ms, rows dropped) of checking a batch whose ``share`` goes back in time."""
    from tickflow.connectors.dead_letter import DeadLetters
    from tickflow.engine.runtime.quality import QualitySpec, QualityStage

    dead = DeadLetters(directory / "dead.jsonl", source="bench")
    stage = QualityStage(QualitySpec(out_of_order="drop"), "ticks", "symbol", dead,
                         streaming=True)
    stage.check(batch)  # accepted: the keys' last times are the batch's newest
    n = batch.num_rows
    back = np.full(n, -3_600_000_000, dtype=np.int64)  # kept: an hour later, still in order
    back[: int(n * share)] = 3_600_000_000  # dropped: an hour back, earlier than every tick
    replay = shifted(batch, np.random.default_rng(1).permutation(back))
    cpu, wall = time.thread_time(), time.perf_counter()
    stage.check(replay)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    dead.close()
    path = directory / "dead.jsonl"
    dropped = sum(1 for _ in path.open()) if path.exists() else 0
    path.unlink(missing_ok=True)
    return cpu * 1e3, wall * 1e3, dropped


def small(batch: pa.RecordBatch, dropped: int, repeat: int, directory: Path) -> float:
    """Median CPU us of checking a small live batch with ``dropped`` of its ticks dropped."""
    from tickflow.connectors.dead_letter import DeadLetters
    from tickflow.engine.runtime.quality import QualitySpec, QualityStage

    dead = DeadLetters(directory / "small.jsonl", source="bench")
    stage = QualityStage(QualitySpec(out_of_order="drop"), "ticks", "symbol", dead,
                         streaming=True)
    stage.check(batch)
    n, hour = batch.num_rows, 3_600_000_000
    replays = []
    for rep in range(repeat):  # kept ticks later batch by batch, dropped ones an hour back
        back = np.full(n, -2 * hour * (rep + 1), dtype=np.int64)
        back[np.random.default_rng(rep).choice(n, dropped, replace=False)] = hour
        replays.append(shifted(batch, back))
    cpu = []
    for replay in replays:
        start = time.thread_time()
        stage.check(replay)
        cpu.append(time.thread_time() - start)
    dead.close()
    (directory / "small.jsonl").unlink(missing_ok=True)
    return float(np.median(cpu)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--small", action="store_true",
                    help="batches of 100 ticks (a live batch at 20K/s) with 0-100 dropped")
    args = ap.parse_args()
    if args.small:
        batch = ticks(100)
        with tempfile.TemporaryDirectory() as d:
            small(batch, 1, 20, Path(d))  # warm
            print("100 ticks a batch: median CPU us of QualityStage.check over 300 batches")
            print("| dropped | CPU us | us / dropped row |")
            print("|---:|---:|---:|")
            for k in (0, 1, 10, 30, 63, 64, 100):
                us = small(batch, k, 300, Path(d))
                print(f"| {k} | {us:.0f} | {us / k:.1f} |" if k else f"| 0 | {us:.0f} | - |")
        return
    batch = ticks(args.rows)
    with tempfile.TemporaryDirectory() as d:
        one(batch, 1.0, Path(d))  # warm: imports, numba, first file
        print(f"{args.rows:,} ticks a batch; median of {args.repeat} (min-max)")
        print("| dropped | rows dropped | CPU ms | wall ms | CPU us / dropped row |")
        print("|---|---:|---:|---:|---:|")
        for share in (1.0, 0.5, 0.0):
            runs = [one(batch, share, Path(d)) for _ in range(args.repeat)]
            cpu = sorted(r[0] for r in runs)
            wall = sorted(r[1] for r in runs)
            dropped = runs[0][2]
            per = f"{np.median(cpu) * 1e3 / dropped:.2f}" if dropped else "-"
            print(f"| {share:.0%} | {dropped:,} | {np.median(cpu):.1f} ({cpu[0]:.1f}-{cpu[-1]:.1f})"
                  f" | {np.median(wall):.1f} ({wall[0]:.1f}-{wall[-1]:.1f}) | {per} |")


if __name__ == "__main__":
    main()
