"""The end of a `run-job` process: from the last batch computed to the process being gone.

Starts ``run-job run JOB --quiet ...`` as its own process would run (the CLI module as
``__main__``, so its own start and end apply: engine/own_process.py) in a child, with time
stamps at the last batch the graph computed, the writers' end (and the report's prepared
close, when the checkout has it), each sink's close, the driver's return and the exit handlers;
the parent adds the moment it reaped the child. Wall seconds from the last batch, and the
child's CPU seconds (all threads) at each stamp; the last line's CPU is the whole process's
from the child's own accounting.

Usage (TICKS and OUT_DIR point jobs/research.yaml at an input and an output folder)::

    .venv/bin/python bench/research_end.py --runs 3 jobs/research.yaml
    .venv/bin/python bench/research_end.py --runs 3 jobs/research.yaml --set report=null
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r'''
import atexit, json, os, runpy, sys, time
STAMPS = []
def stamp(name):
    STAMPS.append((name, time.monotonic(), time.process_time()))
from tickflow.engine.runtime import driver, graph
emit = graph.StreamGraph.emit
def emitted(self, *a, **k):
    out = emit(self, *a, **k)
    STAMPS[:] = [s for s in STAMPS if s[0] != "last batch computed"]
    stamp("last batch computed")
    return out
graph.StreamGraph.emit = emitted
finish = driver.StreamOutput.finish
def finished(self):
    stamp("loop done: writers told to end")
    finish(self)
    stamp("writers ended")
driver.StreamOutput.finish = finished
run = driver.Driver.run
def ran(self):
    for sink, _ in self.sinks:
        def close(_close=sink.close, _name=type(sink).__name__):
            stamp(f"close {_name}")
            out = _close()
            stamp(f"closed {_name}")
            return out
        sink.close = close
        prepare = getattr(sink, "prepare_close", None)
        if prepare is not None:
            def prepared(_prepare=prepare, _name=type(sink).__name__):
                stamp(f"prepare {_name}'s close (its writer thread)")
                _prepare()
                stamp(f"prepared {_name}'s close")
            sink.prepare_close = prepared
    out = run(self)
    stamp("driver returned")
    return out
driver.Driver.run = ran
def report():
    stamp("exit handlers")
    os.write(int(os.environ["RESEARCH_END_FD"]), json.dumps(STAMPS).encode())
atexit.register(report)
sys.argv = ["run-job", "run", *json.loads(os.environ["RESEARCH_END_ARGS"])]
runpy.run_module("tickflow.engine.cli", run_name="__main__", alter_sys=True)
'''


def one_run(args: list[str]) -> list[tuple[str, float, float]]:
    read, write = os.pipe()
    env = {**os.environ, "RESEARCH_END_FD": str(write), "RESEARCH_END_ARGS": json.dumps(args)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], pass_fds=(write,), env=env)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    _, status, usage = os.wait4(child.pid, 0)
    reaped = time.monotonic()
    if status != 0 or not data:
        raise SystemExit(f"run-job failed (wait status {status})")
    stamps = sorted((tuple(s) for s in json.loads(data)), key=lambda s: s[1])
    return [*stamps, ("process reaped", reaped, usage.ru_utime + usage.ru_stime)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    options, rest = parser.parse_known_args()
    if "--quiet" not in rest:
        rest.append("--quiet")
    for i in range(options.runs):
        stamps = one_run(rest)
        start = next(s for s in stamps if s[0] == "last batch computed")
        print(f"run {i + 1}: {'wall s':>7} {'cpu s':>7}  (from the last batch)")
        for name, wall, cpu in stamps[stamps.index(start):]:
            print(f"       {wall - start[1]:7.3f} {cpu - start[2]:7.3f}  {name}")


if __name__ == "__main__":
    main()
