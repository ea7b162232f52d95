"""Where each core is idle in one whole ``run-job JOB --cluster local --workers N`` process.

Why: on 2 cores, 2 workers reach 1.7x one only if almost nothing is serial. This runs the
command as a user does (a fresh process) and records, on one clock (``CLOCK_MONOTONIC``, the
same in every process):

- events of the client (its start, the engine's import, the cluster up, the workers ready,
  each task submitted, the commit, the run's end, the exit), by wrapping a few functions in
  the child process before ``run-job``'s own ``main`` runs;
- each partition task's start, end and CPU in its worker process, and how much CPU that
  worker had used before its first task (its start-up);
- every process of the tree's CPU, sampled every ``--step`` seconds from /proc (client with
  the scheduler and nannies, the forkserver, each worker), so each bucket shows how many of
  the cores were busy and with what.

Usage::

    python bench/dask_timeline.py --ticks DATASET [--workers 2] [--step 0.1] [--tree CHECKOUT]
        [-- EXTRA...]

``DATASET``: e.g. what ``run-job partition ticks.parquet DATASET --parts 8`` wrote. The job is
``jobs/research.yaml`` with ``report=null --quiet``; extra arguments go to ``run-job``.
"""

from __future__ import annotations

import json
import os
import sys
import time

_T_START = time.monotonic()  # the child's first instant in Python (before any import)

from pathlib import Path  # noqa: E402

# the checkout whose engine runs (--tree; the child gets it by the environment)
ROOT = Path(os.environ.get("DASK_TIMELINE_TREE") or Path(__file__).resolve().parent.parent)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------- child: run-job, traced
def _child(events_path: str, argv: list[str]) -> int:
    events: list[dict] = [{"what": "python up (child)", "t": _T_START}]

    def note(what: str, **extra: object) -> None:
        events.append({"what": what, "t": time.monotonic(), **extra})

    import tickflow.engine.cli as cli
    import tickflow.engine.executors.dask_start as dask_start

    note("cli imported")
    original_local = dask_start.local_cluster

    def local_cluster(*a: object, **k: object) -> object:
        note("cluster start begins (thread)")
        made = original_local(*a, **k)
        note("cluster up (client connected)")
        return made

    dask_start.local_cluster = local_cluster
    original_api_job = cli._api_job

    class Traced:  # the API job: its compile noted, the executor wrapped once it is imported
        def __init__(self, job: object):
            self.job = job

        def __getattr__(self, name: str) -> object:
            return getattr(self.job, name)

        def compiled(self, **k: object) -> object:
            note("compile begins")
            out = self.job.compiled(**k)
            note("compile done")
            _patch_executor(note, events)
            return out

    def api_job(*a: object, **k: object) -> object:
        note("engine imported; loading the job")
        return Traced(original_api_job(*a, **k))

    cli._api_job = api_job
    original_exit = getattr(dask_start, "exit_now", None)  # absent in older checkouts

    def exit_now(code: int) -> None:  # run-job ends its process here after a run
        note("exit_now (the process ends)")
        Path(events_path).write_text(json.dumps(events))
        assert original_exit is not None
        original_exit(code)

    if original_exit is not None:
        dask_start.exit_now = exit_now
    sys.argv = ["run-job", *argv]
    try:
        code = cli.main()
    finally:
        note("main returned")
        Path(events_path).write_text(json.dumps(events))
    return code


def _patch_executor(note, events: list) -> None:
    import tickflow.engine.executors.dask as dask_exec

    original_require = dask_exec.require_workers

    def require_workers(client: object) -> int:
        note("waiting for workers")
        n = original_require(client)
        note("workers ready", threads=n)
        return n

    dask_exec.require_workers = require_workers
    dask_exec.run_partition = _traced_partition
    original_merge = dask_exec._merge_results

    def merge(*a: object, **k: object) -> None:
        note("tasks and commit done; merge")
        original_merge(*a, **k)

    dask_exec._merge_results = merge
    original_run_dask = dask_exec.run_dask

    def run_dask(*a: object, **k: object) -> object:
        shown = k.get("progress")

        def progress(result: object) -> None:
            note(f"client has task {result.partition}'s result")
            if shown is not None:
                shown(result)

        k["progress"] = progress
        summary = original_run_dask(*a, **k)
        note("run_dask returned (cluster closed)")
        for part in summary.parts:
            trace = getattr(part, "trace", None)
            if trace:
                events.append({"what": f"task {part.partition}", **trace, "rows": part.rows})
        return summary

    dask_exec.run_dask = run_dask


def _traced_partition(plan: object, partition: int) -> object:
    """Runs in a worker (pickled by value from the child's ``__main__``)."""
    import os
    import time

    import psutil

    from tickflow.engine.executors.dask_tasks import run_partition

    me = psutil.Process()
    before = me.cpu_times()
    t0, c0 = time.monotonic(), time.process_time()
    result = run_partition(plan, partition)
    result.trace = {"pid": os.getpid(), "t": t0, "end": time.monotonic(),
                    "cpu": time.process_time() - c0,
                    "cpu_before": before.user + before.system,
                    "created": me.create_time() - time.time() + time.monotonic()}
    return result


# ---------------------------------------------------------------- parent: sample and print
def _tree(root: object) -> list:
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _label(proc: object, root_pid: int) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:
        return "gone"
    if proc.pid == root_pid:
        return "client"
    if "forkserver" in cmd:  # a worker forked from the server has the server's command line
        try:
            parent = proc.parent()
        except Exception:
            parent = None
        if parent is not None and "forkserver" in " ".join(parent.cmdline()):
            return f"worker:{proc.pid}"
        return "forkserver"
    if "resource_tracker" in cmd:
        return "tracker"
    return f"worker:{proc.pid}"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import subprocess
    import tempfile

    import psutil

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        return _child(argv[1], argv[2:])
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--step", type=float, default=0.1, help="bucket of the CPU chart, s")
    ap.add_argument("--tree", type=Path, default=ROOT,
                    help="the checkout to run (its engine and jobs/research.yaml)")
    args = ap.parse_args(argv)
    tree = args.tree.resolve()
    out = Path(tempfile.mkdtemp(prefix="tickflow-dask-timeline-"))
    events_file = out / "events.json"
    env = {**os.environ, "TICKS": args.ticks, "OUT_DIR": str(out / "out"),
           "PYTHONPATH": str(tree), "DASK_TIMELINE_TREE": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(events_file),
           str(tree / "jobs" / "research.yaml"), "--cluster", "local",
           "--workers", str(args.workers), "--set", "report=null", "--quiet", *extra]
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, env=env, cwd=tree)
    root = psutil.Process(child.pid)
    samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
    labels: dict[int, str] = {}
    while child.poll() is None:
        now = time.monotonic()
        seen: dict[int, tuple[str, float]] = {}
        for proc in _tree(root):
            try:
                times = proc.cpu_times()
                if proc.pid not in labels or labels[proc.pid] == "gone":
                    labels[proc.pid] = _label(proc, child.pid)
                seen[proc.pid] = (labels[proc.pid], times.user + times.system)
            except psutil.NoSuchProcess:
                continue
        samples.append((now, seen))
        time.sleep(max(0.0, 0.02 - (time.monotonic() - now)))
    end = time.monotonic()
    events = json.loads(events_file.read_text()) if events_file.exists() else []
    _print(events, samples, t0, end, args.step, args.workers, load)
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return child.returncode


def _print(events: list[dict], samples: list, t0: float, end: float, step: float,
           workers: int, load: float) -> None:
    cores = os.cpu_count() or 1
    print(f"whole process {end - t0:.2f} s; load average before {load:.1f} on {cores} cores")
    print("\nevents (s from the parent's Popen):")
    tasks = [e for e in events if e["what"].startswith("task ")]
    for e in sorted(events, key=lambda e: e["t"]):
        if e in tasks:
            print(f"  {e['t'] - t0:6.2f}  {e['what']} start (pid {e['pid']}, worker process "
                  f"created {e['created'] - t0:+.2f}, its CPU before the task "
                  f"{e['cpu_before']:.2f} s)")
            print(f"  {e['end'] - t0:6.2f}  {e['what']} end: {e['end'] - e['t']:.2f} s wall, "
                  f"{e['cpu']:.2f} CPU-s, {e['rows']:,} rows")
        else:
            print(f"  {e['t'] - t0:6.2f}  {e['what']}")
    print(f"  {end - t0:6.2f}  process exited")
    # CPU per process per bucket, from consecutive samples
    names = sorted({label for _, seen in samples for label, _ in seen.values()},
                   key=lambda n: (n != "client", n != "forkserver", n))
    buckets = int((end - t0) / step) + 1
    usage = {n: [0.0] * buckets for n in names}
    last: dict[int, float] = {}
    prev_t = t0
    for t, seen in samples:
        for pid, (label, cpu) in seen.items():
            delta = cpu - last.get(pid, 0.0 if label.startswith("worker") else cpu)
            last[pid] = cpu
            if delta > 0:
                # spread the delta over the buckets since the previous sample
                a, b = prev_t - t0, t - t0
                for k in range(int(a / step), min(int(b / step), buckets - 1) + 1):
                    lo, hi = max(a, k * step), min(b, (k + 1) * step)
                    if hi > lo and b > a:
                        usage[label][k] += delta * (hi - lo) / (b - a)
        prev_t = t
    short = {n: (n if not n.startswith("worker:") else f"w{i}") for i, n in
             enumerate(n for n in names if n.startswith("worker:"))}
    short.update({n: n for n in names if not n.startswith("worker:")})
    print(f"\ncores busy per {step:g} s (from /proc; 1.0 = one core):")
    print("   t  " + " ".join(f"{short[n][:10]:>10}" for n in names) + "   total  idle")
    totals = {n: sum(v) for n, v in usage.items()}
    for k in range(buckets):
        row = [usage[n][k] / step for n in names]
        busy = sum(row)
        print(f"{k * step:5.1f} " + " ".join(f"{x:10.2f}" for x in row) +
              f"  {busy:6.2f} {max(0.0, cores - busy):5.2f}  " +
              "#" * round(busy * 10) + "." * max(0, round((cores - busy) * 10)))
    print("\nCPU-s per process: " + ", ".join(f"{short[n]} {totals[n]:.2f}" for n in names))
    wall = end - t0
    used = sum(totals.values())
    print(f"idle core-seconds: {cores * wall - used:.2f} of {cores * wall:.2f} "
          f"({used:.2f} CPU-s used in {wall:.2f} s)")
    if tasks:
        first = min(e["t"] for e in tasks)
        last_end = max(e["end"] for e in tasks)
        ends = " ".join(f"{e['end'] - t0:.2f}" for e in sorted(tasks, key=lambda e: e["end"]))
        print(f"phases: before the first task {first - t0:.2f} s, tasks {last_end - first:.2f} "
              f"s (first start to last end), after {end - last_end:.2f} s; task ends "
              f"{ends}")


if __name__ == "__main__":
    sys.exit(main())
