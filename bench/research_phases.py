"""Where a `run-job` process spends its time: start-up, imports, numba, read, compute, write.

Runs the command line in this process (as ``run-job`` does) with time stamps around its
phases, so the figures add up to the user's wait. Reading, computing and writing overlap on
threads (read-ahead, kernel lanes, writer), so their sums can exceed the loop's wall time;
CPU seconds are the process's (all threads) at each stamp. Optional ``--profile FILE`` writes
a cProfile of the main thread as well. The interpreter's own exit (after "exit of run-job") is
not in these figures: time the whole process for that (``/usr/bin/time``), or
``bench/research_end.py`` from the last batch to the exit.

Usage::

    .venv/bin/python bench/research_phases.py jobs/research.yaml --quiet --set report=null
"""

from __future__ import annotations

import os
import sys
import time

_T0 = time.perf_counter()
_C0 = time.process_time()


def _process_age() -> float:
    """Seconds since this process was created (interpreter start-up before this line)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


_BEFORE = _process_age()
STAMPS: list[tuple[str, float, float]] = [("interpreter start-up", 0.0, 0.0)]
SUMS: dict[str, float] = {}


def stamp(name: str) -> None:
    STAMPS.append((name, time.perf_counter() - _T0, time.process_time() - _C0))


def timed_sum(name: str, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            SUMS[name] = SUMS.get(name, 0.0) + time.perf_counter() - t
    return wrapper


def timed_iter(name: str, it):
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            SUMS[name] = SUMS.get(name, 0.0) + time.perf_counter() - t
            return
        SUMS[name] = SUMS.get(name, 0.0) + time.perf_counter() - t
        yield item


def instrument() -> None:
    from tickflow.engine.runtime import driver, pipeline, quality

    stamp("imports (engine, CLI)")
    orig_init, orig_run = driver.Driver.__init__, driver.Driver.run

    def init(self, *a, **k):
        stamp("load + compile the job")
        orig_init(self, *a, **k)
        stamp("driver set-up (quality stage: numba start)")
        for sink, _ in self.sinks:
            sink.write = timed_sum("write (writer thread)", sink.write)
            sink.close = timed_sum("close (sinks: footer, publish)", sink.close)
        for src in self.sources.values():
            orig_batches = src.batches
            src.batches = lambda *a, _b=orig_batches, **k: timed_iter(
                "read (read-ahead thread)", _b(*a, **k))

    def run(self):
        orig_bind = self.graph.bind

        def bind(*a, **k):
            out = orig_bind(*a, **k)
            stamp("bind (schema probe)")
            return out
        self.graph.bind = bind
        out = orig_run(self)
        stamp("read, compute, write, close")
        return out

    driver.Driver.__init__ = init
    driver.Driver.run = run
    pipeline.Pipeline.process = timed_sum("compute (Pipeline.process)", pipeline.Pipeline.process)
    quality.QualityStage.check = timed_sum("quality stage", quality.QualityStage.check)


def report() -> None:
    print(f"\nprocess age when this script started: {_BEFORE:.2f} s (interpreter start-up)",
          file=sys.stderr)
    print(f"{'phase':<46}{'wall s':>8}{'cpu s':>8}", file=sys.stderr)
    prev_w = prev_c = 0.0
    for name, w, c in STAMPS[1:]:
        print(f"{name:<46}{w - prev_w:>8.2f}{c - prev_c:>8.2f}", file=sys.stderr)
        prev_w, prev_c = w, c
    print(f"{'total after start-up':<46}{prev_w:>8.2f}{prev_c:>8.2f}", file=sys.stderr)
    for name, s in SUMS.items():
        print(f"  sum of {name:<38}{s:>8.2f}", file=sys.stderr)


def main() -> int:
    profile = None
    args = sys.argv[1:]
    if args[:1] == ["--profile"]:
        profile, args = args[1], args[2:]
    import gc

    gc.disable()  # as run-job does during start-up (engine/cli.py main)
    try:  # and numba's start without scipy.linalg (engine/own_process.py)
        from tickflow.engine.own_process import numba_blas_alone
    except ImportError:  # a checkout from before it
        pass
    else:
        numba_blas_alone()
    instrument()
    from tickflow.engine.cli import main as cli_main

    stamp("imports (CLI)")
    sys.argv = ["run-job", "run", *args]  # main() without argv: as the run-job process runs
    if profile:
        import cProfile

        prof = cProfile.Profile()
        code = prof.runcall(cli_main)
        prof.dump_stats(profile)
    else:
        code = cli_main()
    stamp("exit of run-job")
    report()
    return code


if __name__ == "__main__":
    sys.exit(main())
