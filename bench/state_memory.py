"""Where the peak RSS of a research run goes: kernel state by step and field, Arrow, the rest.

Runs the research job (``jobs/research.yaml`` without its report) in this process over a
ticks file, samples the process RSS every 10 ms, and after the run prints:

- the peak RSS and when it happened (seconds into the run);
- the kernel state held after the run, by step (and its largest fields), every lane summed;
  for a step with width tiers (engine/state/arrays.py), the keys and width of each tier;
- Arrow's memory pool: its peak and what it holds at the end (batches in flight, the writer);
- the resident size before the run (interpreter, imports), and after the run once glibc
  (``malloc_trim``) and Arrow's pool gave back the memory they keep for reuse.

Usage::

    PYTHONPATH=$PWD python bench/state_memory.py /tmp/speed_s100k.parquet
    PYTHONPATH=$PWD python bench/state_memory.py TICKS --backend rocksdb --workers 1 --top 25

``run-job simulate --symbols 100000 --rows 2000000 -o TICKS`` writes the 100K-symbol input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler(threading.Thread):
    """Samples RSS until stopped: the peak and when it happened."""

    def __init__(self, every: float = 0.01):
        super().__init__(daemon=True)
        self.every, self.peak, self.at, self.t0 = every, 0, 0.0, time.perf_counter()
        self.done = threading.Event()

    def run(self) -> None:
        self.trace: list[tuple[float, int]] = []
        while not self.done.is_set():
            r = rss_bytes()
            t = time.perf_counter() - self.t0
            if r > self.peak:
                self.peak, self.at = r, t
            if not self.trace or t - self.trace[-1][0] >= 1.0:
                self.trace.append((t, r))
            time.sleep(self.every)


def state_table(pipeline: Any, top: int) -> int:
    """Print every step's state bytes (lanes summed), largest first; return the total."""
    rows: list[tuple[int, str, str]] = []
    fields: list[tuple[int, str]] = []
    for j, step in enumerate(pipeline.lanes[0].steps):
        size, notes = 0, []
        for lane in pipeline.lanes:
            st = lane.states[j]
            size += st.nbytes()
            notes.append(st.describe())
            for name, b in st.field_bytes().items():
                fields.append((b, f"{step.step_id}.{name}"))
        rows.append((size, step.step_id, "; ".join(n for n in notes if n)))
    for name, st in pipeline.rule_states.items():
        rows.append((st.nbytes(), f"signal.{name}", ""))
    total = sum(r[0] for r in rows)
    print(f"\nkernel state after the run: {total / 1e6:,.1f} MB in {len(rows)} steps")
    print(f"  {'step':<28} {'MB':>9}  tiers (keys x width)")
    for size, sid, note in sorted(rows, reverse=True)[:top]:
        print(f"  {sid:<28} {size / 1e6:>9.1f}  {note}")
    merged: dict[str, int] = {}
    for b, name in fields:
        merged[name] = merged.get(name, 0) + b
    print(f"\n  largest fields (top {top}):")
    for name, b in sorted(merged.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:<40} {b / 1e6:>9.1f} MB")
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("ticks")
    p.add_argument("--backend", default="memory", choices=("memory", "rocksdb", "tiledb"))
    p.add_argument("--workers", type=int, default=0, help="lanes (0: the job's default)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--trace", action="store_true", help="print the RSS every second")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="a job override, e.g. executor.morsel_rows=524288 (repeatable)")
    args = p.parse_args()

    import pyarrow as pa

    from tickflow.engine.compile import compile_job
    from tickflow.engine.limits import worker_lanes
    from tickflow.engine.loader import load_job
    from tickflow.engine.runtime.driver import Driver
    from tickflow.engine.state.recovery import open_checkpointer

    with tempfile.TemporaryDirectory(prefix="tickflow-statemem-") as d:
        os.environ["TICKS"], os.environ["OUT_DIR"] = args.ticks, d
        sets = ["report=null", "executor.progress=false", f"state.backend={args.backend}",
                f"state.path={d}/state", *args.set]
        job = compile_job(load_job(ROOT / "jobs" / "research.yaml", sets))
        job.context.quiet = True
        workers = worker_lanes(job.spec, args.workers or None)
        before = rss_bytes()
        sampler = Sampler()
        sampler.start()
        driver = Driver(job, workers=workers, morsel_rows=job.spec.executor.morsel_rows,
                        checkpointer=open_checkpointer(job, reset=True))
        summary = driver.run()
        sampler.done.set()
        sampler.join()
        wall = time.perf_counter() - sampler.t0
        print(f"{summary.rows:,} ticks, backend {args.backend}, {workers} lane(s): "
              f"{wall:.2f} s ({summary.rows / wall:,.0f} ticks/s in process)")
        print(f"RSS before the run {before / 1e6:,.0f} MB; peak {sampler.peak / 1e6:,.0f} MB at "
              f"{sampler.at:.1f} s; at the end {rss_bytes() / 1e6:,.0f} MB")
        if args.trace:
            print("RSS each second: " + " ".join(f"{r / 1e6:,.0f}" for _, r in sampler.trace))
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"RSS after malloc_trim (freed heap memory glibc kept): {rss_bytes() / 1e6:,.0f} MB")
        pool = pa.default_memory_pool()
        pool.release_unused()
        print(f"RSS after Arrow's pool released its unused memory: {rss_bytes() / 1e6:,.0f} MB")
        print(f"Arrow pool ({pool.backend_name}): peak {pool.max_memory() / 1e6:,.0f} MB, "
              f"held at the end {pool.bytes_allocated() / 1e6:,.0f} MB")
        pipe = driver.graph.main_pipeline
        if pipe is not None:
            print(f"keys: {len(pipe.keys.values):,}")
            state_table(pipe, args.top)


if __name__ == "__main__":
    main()
