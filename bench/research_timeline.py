"""Which thread is busy when, and holding the GIL or not: the timeline of a `run-job` process.

Runs the command line in this process (as ``bench/research_phases.py`` does) with every
per-morsel piece of work wrapped: reading and the quality stage (read-ahead thread), kernels,
signals and the Arrow glue of ``Pipeline.process`` (main thread), the hand-off to the writer,
and each sink's ``write`` (writer thread). For each piece it records wall time and the thread's
own CPU time (``time.thread_time``). A piece whose CPU time is well below its wall time waited
(for the GIL, the disk, a queue); the sum of the pieces per thread against the loop's wall time
says how much each thread could overlap with the others.

A GIL probe thread (``--probe``) sleeps 1 ms at a time and records how late it wakes: a late
wake-up is a wait for the GIL (``sys.getswitchinterval()`` is 5 ms), so the share of late
wake-ups is about the share of time some thread held the GIL.

Usage::

    .venv/bin/python bench/research_timeline.py jobs/research.yaml --quiet
    .venv/bin/python bench/research_timeline.py --probe --chart 0.25 jobs/research.yaml --quiet
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

EVENTS: list[tuple[str, str, float, float, float]] = []  # thread, label, t0, t1, cpu
_LOCK = threading.Lock()
_T0 = time.perf_counter()
_STACK = threading.local()


def _thread() -> str:
    name = threading.current_thread().name
    if name.startswith("ThreadPoolExecutor"):
        return "lane-" + name.rsplit("_", 1)[-1]
    return name


def timed(label: str, fn):
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.thread_time()
        _note_thread()
        try:
            return fn(*a, **k)
        finally:
            e = (_thread(), label, t - _T0, time.perf_counter() - _T0, time.thread_time() - c)
            with _LOCK:
                EVENTS.append(e)
    return wrapper


def timed_iter(label: str, it):
    while True:
        t, c = time.perf_counter(), time.thread_time()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            e = (_thread(), label, t - _T0, time.perf_counter() - _T0, time.thread_time() - c)
            with _LOCK:
                EVENTS.append(e)
        yield item


ENDED: list[tuple[str, float]] = []  # Python threads that ended: name, thread CPU seconds


def instrument() -> None:
    orig_run = threading.Thread.run

    def run(self):
        try:
            orig_run(self)
        finally:
            with _LOCK:
                ENDED.append((_thread(), time.thread_time()))

    threading.Thread.run = run
    from tickflow.engine import rules
    from tickflow.engine.runtime import driver, key_groups, pipeline, quality

    orig_init = driver.Driver.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        for sink, _ in self.sinks:
            kind = type(sink).__name__.replace("Sink", "").lower()
            sink.write = timed(f"write {kind}", sink.write)
        for src in self.sources.values():
            orig = src.batches
            src.batches = lambda *a, _b=orig, **k: timed_iter("read", _b(*a, **k))

    driver.Driver.__init__ = init
    orig_prefetch = driver.prefetch
    driver.prefetch = lambda it, *a, **k: timed_iter("wait for read-ahead",
                                                     orig_prefetch(it, *a, **k))
    driver.StreamOutput.put = timed("put (hand-off to writer)", driver.StreamOutput.put)
    pipeline.Pipeline.process = timed("process", pipeline.Pipeline.process)
    pipeline.Lane.run = timed("kernels (Lane.run)", pipeline.Lane.run)
    key_groups.run_grouped = timed("grouped kernels", key_groups.run_grouped)
    pipeline.run_grouped = key_groups.run_grouped
    rules.Rule.mask = timed("signals (Rule.mask)", rules.Rule.mask)
    quality.QualityStage.check = timed("quality", quality.QualityStage.check)
    from tickflow.connectors import parquet_writer

    parquet_writer.AtomicParquetWriter._flush = timed(
        "parquet flush (from_batches + write_table)", parquet_writer.AtomicParquetWriter._flush)


PROBE: list[float] = []


def probe(stop: threading.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        time.sleep(0.001)
        PROBE.append(time.perf_counter() - t - 0.001)


NATIVE: dict[int, str] = {}  # native thread id -> Python thread name


def _note_thread() -> None:
    NATIVE[threading.get_native_id()] = _thread()


def task_cpu() -> list[tuple[str, float]]:
    """CPU seconds (user + system) of every thread of this process still alive."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        rows.append((NATIVE.get(int(tid), comm), cpu))
    return sorted(rows, key=lambda r: -r[1])


def summary(chart: float | None) -> None:
    out = sys.stderr
    loop = [e for e in EVENTS if e[1] in ("read", "process")]
    if not loop:
        return
    start = min(e[2] for e in loop)
    end = max(e[3] for e in EVENTS)
    span = end - start
    print(f"\nloop: {start:.2f} s .. {end:.2f} s = {span:.2f} s wall", file=out)
    rows: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for th, label, t0, t1, cpu in EVENTS:
        r = rows[th, label]
        r[0] += 1
        r[1] += t1 - t0
        r[2] += cpu
    print(f"{'thread':<22}{'piece':<46}{'n':>6}{'wall s':>9}{'cpu s':>8}", file=out)
    for (th, label), (n, w, c) in sorted(rows.items()):
        print(f"{th:<22}{label:<46}{n:>6}{w:>9.2f}{c:>8.2f}", file=out)
    print("\nCPU seconds by thread (whole run; ended Python threads, then live ones):",
          file=out)
    for name, cpu in ENDED + [r for r in task_cpu() if r[1] >= 0.01]:
        print(f"  {name:<40}{cpu:>8.2f}", file=out)
    if PROBE:
        late = sum(1 for x in PROBE if x > 0.002)
        print(f"GIL probe: {len(PROBE)} wake-ups, {late / len(PROBE):.0%} later than 2 ms, "
              f"median delay {sorted(PROBE)[len(PROBE) // 2] * 1e3:.2f} ms", file=out)
    if chart:
        top = {"read", "process", "write parquet", "write researchreport",
               "put (hand-off to writer)", "wait for read-ahead"}
        threads = sorted({e[0] for e in EVENTS if e[1] in top})
        n = int(span / chart) + 1
        print(f"\nbusy share per {chart:g} s bucket (0-9, # = full): wall busy, not CPU",
              file=out)
        for th in threads:
            for label in sorted({e[1] for e in EVENTS if e[0] == th and e[1] in top}):
                busy = [0.0] * n
                for t, lab, t0, t1, _ in EVENTS:
                    if t != th or lab != label:
                        continue
                    a, b = t0 - start, t1 - start
                    i = int(a / chart)
                    while a < b and i < n:
                        edge = min(b, (i + 1) * chart)
                        busy[i] += edge - a
                        a, i = edge, i + 1
                line = "".join("#" if x >= chart * 0.95 else str(int(9.99 * x / chart))
                               for x in busy)
                print(f"{th[:12]:<12} {label[:12]:<12} {line}", file=out)


def main() -> int:
    args = sys.argv[1:]
    chart = None
    use_probe = False
    while args and args[0].startswith("--") and args[0] in ("--chart", "--probe"):
        if args[0] == "--chart":
            chart, args = float(args[1]), args[2:]
        else:
            use_probe, args = True, args[1:]
    import gc

    gc.disable()  # as run-job does during start-up (engine/cli.py main)
    instrument()
    from tickflow.engine.cli import main as cli_main

    sys.argv = ["run-job", "run", *args]
    stop = threading.Event()
    if use_probe:
        threading.Thread(target=probe, args=(stop,), daemon=True, name="probe").start()
    c0 = time.process_time()
    t0 = time.perf_counter()
    code = cli_main()
    stop.set()
    print(f"run-job: {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} CPU-s (process)", file=sys.stderr)
    summary(chart)
    return code


if __name__ == "__main__":
    sys.exit(main())
