"""The research report's share of a research run: ``python bench/research_report_share.py
TICKS.parquet [OUT_DIR]`` runs ``jobs/research.yaml`` in this process (quiet) on the ticks and
prints the run's wall and CPU seconds beside the report sink's CPU: its writes (on the writer
thread), its ``close`` (statistics, correlations, page) and the Bokeh import it starts on a
thread. CPU seconds are the steadier figure on a shared machine.

Make 5M ticks with ``run-job simulate -o ticks.parquet --rows 5000000 --symbols 14 --seed 7``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main(ticks: str, out_dir: str = "/tmp/tickflow-report-share") -> None:
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


if __name__ == "__main__":
    main(*sys.argv[1:])
