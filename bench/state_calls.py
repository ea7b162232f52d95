"""Thread CPU time of the loop's per-morsel calls around the kernels: state, key ids, gathers.

Runs the research job (``jobs/research.yaml`` without its report) in this process, with each
call below wrapped to add up ``time.thread_time()`` (the calling thread's CPU, so other
threads and other processes on a shared machine do not count). Nested calls are counted in
their callers too (``_place`` is inside ``reserve``, ``_run`` inside ``Step.run``).

- ``Step.run``: a kernel step over a chunk, all of it; ``Step._run``: the kernel itself
  (the first morsel's includes numba loading the kernel's cached code);
- ``KernelState.reserve`` (the width tiers' check), ``._place`` (moves, tier 0 widened),
  ``._settle`` (tier 0 widened, side tiers folded back), ``._move`` (keys moved),
  ``.ensure_keys`` (new keys' rows filled), ``.route``;
- ``KeyIndex.encode`` (key ids: the pipeline's on the loop, the quality stage's on the
  read-ahead thread) and ``key_groups.run_grouped`` (rows grouped by key, outputs
  put back in arrival order) in the pipeline's module.

Usage::

    PYTHONPATH=$PWD python bench/state_calls.py TICKS [--runs 3] [--set PATH=VALUE ...]

``run-job simulate --symbols 100000 --rows 2000000 -o TICKS`` writes the 100K-symbol input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOTALS: Counter[str] = Counter()
CALLS: Counter[str] = Counter()


def wrap(owner: object, name: str, label: str) -> None:
    fn = getattr(owner, name)

    def timed(*args, **kwargs):
        t = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[label] += time.thread_time() - t
            CALLS[label] += 1

    setattr(owner, name, timed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ticks")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    args = p.parse_args()

    from tickflow.engine import keys
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job
    from tickflow.engine.runtime import pipeline
    from tickflow.engine.runtime.driver import Driver
    from tickflow.engine.state.arrays import KernelState
    from tickflow.engine.step import BoundKernel

    wrap(BoundKernel, "run", "Step.run")
    wrap(BoundKernel, "_run", "Step._run (kernels)")
    for name in ("reserve", "_place", "_settle", "_move", "ensure_keys", "route"):
        wrap(KernelState, name, f"KernelState.{name}")
    wrap(keys.KeyIndex, "encode", "KeyIndex.encode (both indexes)")
    wrap(pipeline, "run_grouped", "run_grouped (incl. Step.run)")

    for run in range(args.runs):
        TOTALS.clear()
        CALLS.clear()
        with tempfile.TemporaryDirectory(prefix="tickflow-statecalls-") as d:
            os.environ["TICKS"], os.environ["OUT_DIR"] = args.ticks, d
            job = compile_job(load_job(ROOT / "jobs" / "research.yaml",
                                       ["report=null", "executor.progress=false", *args.set]))
            job.context.quiet = True
            cpu, wall = time.process_time(), time.perf_counter()
            summary = Driver(job, workers=1, morsel_rows=job.spec.executor.morsel_rows).run()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"run {run + 1}: {summary.rows:,} rows, {wall:.2f} s wall, {cpu:.2f} CPU-s "
              f"(process, all threads)")
        for label, total in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
            print(f"  {label:34s} {total:7.2f} s  {CALLS[label]:6d} calls")


if __name__ == "__main__":
    main()
