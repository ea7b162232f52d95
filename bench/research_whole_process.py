"""The research job timed as the user feels it: the whole `run-job` process against a polars
script (and pandas at small sizes), runs paired A B A B so that drift hits both alike.

Each run is a fresh process: interpreter start, imports, reading, computing, writing and the
report are all in the figure. Peak RSS is the process's own (``ru_maxrss`` of the child); CPU
seconds (user + system, all threads) are the figure to compare when other work loads the
machine.
One warm-up round first (numba's cache, the page cache) is not counted.

Usage::

    .venv/bin/python bench/research_whole_process.py                  # 5M ticks, 5 pairs
    .venv/bin/python bench/research_whole_process.py --rows 1000000 --pandas
    .venv/bin/python bench/research_whole_process.py --no-report      # the job without report:

The polars and pandas peers are the functions of ``bench/research_vs_peers.py`` (the same
columns), run as their own processes through its ``--child`` entry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "research_vs_peers.py"
JOB = ROOT / "jobs" / "research.yaml"
TARGET_RATE = 2_000_000
TARGET_VS_POLARS = 3.5


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS bytes, exit code) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
        print(f"  !! {' '.join(cmd[:3])} ... exited {code}\n{err}", file=sys.stderr)
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--symbols", type=int, default=14)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--pandas", action="store_true", help="add pandas (minutes above 1M rows)")
    ap.add_argument("--no-report", action="store_true", help="run the job without its report")
    ap.add_argument("--job", default=str(JOB))
    args = ap.parse_args(argv)
    run_job = str(Path(sys.executable).with_name("run-job"))
    with tempfile.TemporaryDirectory(prefix="tickflow-wp-") as tmp:
        work = Path(tmp)
        src = work / "ticks.parquet"
        subprocess.run([run_job, "simulate", "-o", str(src), "--rows", str(args.rows),
                        "--symbols", str(args.symbols), "--seed", "7"], check=True,
                       stdout=subprocess.DEVNULL)
        env = {**os.environ, "TICKS": str(src), "OUT_DIR": str(work / "tickflow")}
        tickflow = [run_job, args.job, "--quiet"]
        if args.no_report:
            tickflow += ["--set", "report=null"]
        peers = {"polars": [sys.executable, str(PEERS), "--child", "polars", "--input", str(src),
                            "--outdir", str(work / "polars"), "--warm", str(src)]}
        if args.pandas:
            peers["pandas"] = [sys.executable, str(PEERS), "--child", "pandas", "--input",
                               str(src), "--outdir", str(work / "pandas"), "--warm", str(src)]
        commands = {"tickflow": tickflow, **peers}
        for cmd in commands.values():  # warm-up round, not counted
            timed(cmd, env)
        walls: dict[str, list[float]] = {n: [] for n in commands}
        cpus: dict[str, list[float]] = {n: [] for n in commands}
        rss: dict[str, list[int]] = {n: [] for n in commands}
        for _ in range(args.pairs):
            for name, cmd in commands.items():
                w, c, r, _code = timed(cmd, env)
                walls[name].append(w)
                cpus[name].append(c)
                rss[name].append(r)
    print(f"input: {args.rows:,} ticks, {args.symbols} symbols; {args.pairs} paired rounds "
          f"after one warm-up round; cpus={os.cpu_count()}")
    print(f"tickflow: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(tickflow))}")
    print(f"{'command':<10}{'median wall s':>15}{'min':>8}{'max':>8}{'ticks/s':>13}"
          f"{'cpu s':>8}{'peak RSS':>11}")
    for name in commands:
        med = statistics.median(walls[name])
        print(f"{name:<10}{med:>15.2f}{min(walls[name]):>8.2f}{max(walls[name]):>8.2f}"
              f"{args.rows / med:>13,.0f}{statistics.median(cpus[name]):>8.2f}"
              f"{max(rss[name]) / 1024**2:>9,.0f} MB")
    tf = statistics.median(walls["tickflow"])
    rate = args.rows / tf
    ratios = [p / t for p, t in zip(walls["polars"], walls["tickflow"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"tickflow vs polars, pair by pair: median {ratio:.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    print(f"goal: whole process >= {TARGET_RATE:,} ticks/s: {rate:,.0f} "
          f"({'met' if rate >= TARGET_RATE else 'not met'}); >= {TARGET_VS_POLARS}x polars: "
          f"{ratio:.2f}x ({'met' if ratio >= TARGET_VS_POLARS else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
