"""``run-job --cluster local`` whole-process, several checkouts interleaved on one input.

Why: on the shared machine the load changes from minute to minute; running each checkout's
``--workers 1`` and ``--workers 2`` in turn, round after round (the order of the checkouts
reversed every other round), keeps a comparison of two trees fair. Each run is a fresh process
(report off, ``--quiet``); its output is deleted after it (1.6 GB at 4M ticks), untimed.

Usage::

    python bench/dask_trees.py --rounds 4 --ticks DATASET /path/to/main /path/to/branch

``DATASET``: a Parquet input, e.g. what ``run-job partition ticks.parquet DATASET --parts 8``
wrote. Each checkout is run with ``PYTHONPATH`` set to it. ``--idle 0.8`` waits (at most
``--wait`` s) before each run until the cores were at least 80% idle over the last second
(other jobs' load otherwise decides the figures); each run prints how idle the machine was
just before it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> tuple[float, float]:
    """(idle, total) jiffies of all cores, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def wait_idle(share: float, most: float) -> float:
    """Wait until the cores were ``share`` idle over one second (at most ``most`` s); the
    idle share of the last second."""
    deadline = time.monotonic() + most
    while True:
        i0, t0 = _cpu()
        time.sleep(1.0)
        i1, t1 = _cpu()
        idle = (i1 - i0) / max(t1 - t0, 1.0)
        if idle >= share or time.monotonic() > deadline:
            return idle


def run(tree: Path, ticks: str, workers: int, out: Path) -> float:
    env = {**os.environ, "TICKS": ticks, "OUT_DIR": str(out), "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    job = str(tree / "jobs" / "research.yaml")
    subprocess.run([sys.executable, "-m", "tickflow.engine.cli", job, "--cluster", "local",
                    "--workers", str(workers), "--set", "report=null", "--quiet"],
                   env=env, check=True, cwd=tree)
    took = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", type=Path)
    ap.add_argument("--ticks", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--idle", type=float, default=0.0,
                    help="wait before each run until the cores are this idle (0-1)")
    ap.add_argument("--wait", type=float, default=60.0, help="--idle: at most this long, s")
    args = ap.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="tickflow-dask-trees-"))
    times: dict[tuple[Path, int], list[float]] = {(t, w): [] for t in args.trees for w in (1, 2)}
    for tree in args.trees:  # numba's cache and the page cache warm
        run(tree, args.ticks, 1, out)
    print(f"load average at the start {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        for w in (1, 2):
            for tree in args.trees if r % 2 == 0 else args.trees[::-1]:
                idle = wait_idle(args.idle, args.wait) if args.idle else float("nan")
                times[(tree, w)].append(run(tree, args.ticks, w, out))
                print(f"round {r}: {tree.name} --workers {w} {times[(tree, w)][-1]:.2f} s "
                      f"(idle before {idle:.0%})", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for tree in args.trees:
        one, two = times[(tree, 1)], times[(tree, 2)]
        print(f"{tree}: --workers 1 {' '.join(f'{x:.2f}' for x in one)} s, --workers 2 "
              f"{' '.join(f'{x:.2f}' for x in two)} s; medians {statistics.median(one):.2f} / "
              f"{statistics.median(two):.2f} s = "
              f"{statistics.median(one) / statistics.median(two):.2f}x")
    base = args.trees[0]
    for tree in args.trees[1:]:
        for w in (1, 2):
            ratios = [a / b for a, b in zip(times[(tree, w)], times[(base, w)], strict=True)]
            print(f"--workers {w}: {tree.name} / {base.name} per round "
                  f"{' '.join(f'{x:.2f}' for x in ratios)}, median {statistics.median(ratios):.2f}")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
