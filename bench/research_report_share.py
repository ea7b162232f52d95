"""The research report's share of a research run, two ways.

``python bench/research_report_share.py TICKS.parquet [OUT_DIR]`` runs ``jobs/research.yaml``
in this process (quiet) on the ticks and prints the run's wall and CPU seconds beside the
report sink's CPU: its writes (on the writer thread), its ``close`` (statistics, correlations,
page) and the Bokeh import it starts on a thread when the page needs Bokeh. CPU seconds are
the steadier figure on a shared machine.

``python bench/research_report_share.py TICKS.parquet [OUT_DIR] --pairs 5`` times the whole
``run-job`` process as a user waits for it, with the report and without it (``--set
report=null``), in turn A B A B after one warm-up pair, and prints each pair's wall and CPU
(user + system, from the child's own accounting) and the report's share,
``(with - without) / with``, pair by pair and as the median.

Make 5M ticks with ``run-job simulate -o ticks.parquet --rows 5000000 --symbols 14 --seed 7``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def in_process(ticks: str, out_dir: str) -> None:
    os.environ["TICKS"], os.environ["OUT_DIR"] = ticks, out_dir
    import tickflow.connectors.research_html as research_html
    from tickflow.connectors.report import ResearchReportSink
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors.local import run_local
    from tickflow.engine.loader import load_job

    cpu = {"write": 0.0, "close": 0.0, "import": 0.0}
    write, close = ResearchReportSink.write, ResearchReportSink.close
    warm = getattr(research_html, "import_page_modules", None)  # absent before it existed

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any) -> Any:
            start = time.thread_time()
            try:
                return fn(*args)
            finally:
                cpu[name] += time.thread_time() - start
        return run

    ResearchReportSink.write = timed("write", write)  # type: ignore[method-assign]
    ResearchReportSink.close = timed("close", close)  # type: ignore[method-assign]
    if warm is not None:
        research_html.import_page_modules = timed("import", warm)
    job = compile_job(load_job(ROOT / "jobs" / "research.yaml"))
    job.context.quiet = True
    start, start_cpu = time.perf_counter(), time.process_time()
    run_local(job)
    wall, run_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    report = sum(cpu.values())
    print(f"run: {wall:.2f} s wall, {run_cpu:.2f} s CPU; report CPU: write {cpu['write']:.2f} s, "
          f"close {cpu['close']:.2f} s, Bokeh import {cpu['import']:.2f} s = {report:.2f} s "
          f"({report / run_cpu:.1%} of the run's CPU); load {os.getloadavg()[0]:.1f}")


def whole_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one ``run-job`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def paired(ticks: str, out_dir: str, pairs: int) -> None:
    env = {**os.environ, "TICKS": ticks, "OUT_DIR": out_dir}
    run_job = str(Path(sys.executable).with_name("run-job"))
    with_report = [run_job, str(ROOT / "jobs" / "research.yaml"), "--quiet"]
    without = [*with_report, "--set", "report=null"]
    for cmd in (with_report, without):  # warm-up pair (page cache, numba's cache)
        whole_process(cmd, env)
    shares: dict[str, list[float]] = {"wall": [], "CPU": []}
    print(f"{pairs} pairs (with report, without), after one warm-up pair; "
          f"command: run-job jobs/research.yaml --quiet [--set report=null]")
    for i in range(pairs):
        a, b = whole_process(with_report, env), whole_process(without, env)
        shares["wall"].append((a[0] - b[0]) / a[0])
        shares["CPU"].append((a[1] - b[1]) / a[1])
        print(f"pair {i + 1}: wall {a[0]:.2f} s vs {b[0]:.2f} s, CPU {a[1]:.2f} s vs "
              f"{b[1]:.2f} s; report share: wall {shares['wall'][-1]:.1%}, "
              f"CPU {shares['CPU'][-1]:.1%}; load {os.getloadavg()[0]:.1f}")
    for name, values in shares.items():
        print(f"report share of the run, {name}: median {statistics.median(values):.1%} "
              f"(min {min(values):.1%}, max {max(values):.1%})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ticks")
    ap.add_argument("out_dir", nargs="?", default="/tmp/tickflow-report-share")
    ap.add_argument("--pairs", type=int, default=0,
                    help="time whole run-job processes with and without the report, paired")
    args = ap.parse_args(argv)
    if args.pairs:
        paired(args.ticks, args.out_dir, args.pairs)
    else:
        in_process(args.ticks, args.out_dir)


if __name__ == "__main__":
    main()
