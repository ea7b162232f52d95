"""``bench/soak.py --probe``: where the live job's memory is, logged from inside the job.

Put on the job's PYTHONPATH by soak.py (Python imports ``sitecustomize`` at start-up); it does
nothing unless ``TICKFLOW_SOAK_PROBE`` names a log file. Every ``TICKFLOW_SOAK_PROBE_S``
seconds a thread writes one line: RSS (anonymous and file-backed), the bytes pyarrow's pool
holds, glibc malloc's heap (its arenas: in use and free) and the thread count. Cheap enough to
leave on for a whole soak (no tracemalloc, no object walks); how the replay's capture reader
was found holding every row group it had read.

``TICKFLOW_SOAK_TRACEMALLOC=FRAMES`` (``soak.py --tracemalloc``) also traces Python's and
numpy's allocations (not Arrow's pool, not librdkafka's) and, at each probe line after the
first minute, writes to ``<log>.tracemalloc`` the 15 call sites whose live memory grew most
since the first snapshot: a slow leak shows as one that keeps growing. It slows the job.
``TICKFLOW_SOAK_TRIM=1`` (``soak.py --trim``) calls glibc's ``malloc_trim`` after each line
and logs the RSS after it: how much of malloc's free heap was resident.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                n = int(value.split()[0])
                out[key] = n // 1024 if "kB" in value else n
    return out


def _probe(path: str, every_s: float) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc 2.33+
        libc = None
    start = time.monotonic()
    tracer = _Tracer(path + ".tracemalloc") if os.environ.get("TICKFLOW_SOAK_TRACEMALLOC") \
        else None
    trim = bool(os.environ.get("TICKFLOW_SOAK_TRIM"))
    with open(path, "w") as log:
        print("t_s rss_mb anon_mb file_mb arrow_pool_mb malloc_heap_mb malloc_used_mb "
              "malloc_free_mb threads", file=log, flush=True)
        while True:
            time.sleep(every_s)
            import sys

            pa = sys.modules.get("pyarrow")  # never imported here first
            pool = pa.total_allocated_bytes() >> 20 if pa is not None else -1
            mi = libc.mallinfo2() if libc is not None else _MallInfo2()
            s = _status()
            print(f"{time.monotonic() - start:.0f} {s.get('VmRSS')} {s.get('RssAnon')} "
                  f"{s.get('RssFile')} {pool} {mi.arena >> 20} {mi.uordblks >> 20} "
                  f"{mi.fordblks >> 20} {s.get('Threads')}", file=log, flush=True)
            if trim and libc is not None:  # what of malloc's free heap was resident
                t0 = time.perf_counter()
                libc.malloc_trim(0)
                ms = (time.perf_counter() - t0) * 1e3
                print(f"  trim: {ms:.0f} ms, RSS {_status().get('VmRSS')} MB after", file=log,
                      flush=True)
            if tracer is not None and time.monotonic() - start >= 60:
                tracer.snapshot(time.monotonic() - start)


class _Tracer:
    """tracemalloc snapshots, each diffed against the first taken (after the first minute)."""

    def __init__(self, path: str):
        import tracemalloc

        self.path = path
        self.first = None
        tracemalloc.start(int(os.environ["TICKFLOW_SOAK_TRACEMALLOC"]))

    def snapshot(self, t: float) -> None:
        import tracemalloc

        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        if self.first is None:
            self.first = snap
            return
        stats = snap.compare_to(self.first, "traceback")[:15]
        with open(self.path, "a") as out:
            total = sum(s.size for s in snap.statistics("filename"))
            print(f"== t {t:.0f} s: traced {total >> 20} MB; top growth since the first "
                  f"snapshot", file=out)
            for stat in stats:
                where = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}"
                                    for f in stat.traceback)
                print(f"{stat.size_diff / 1024:+10.0f} KB {stat.count_diff:+8d} blocks "
                      f"(now {stat.size / 1024:.0f} KB) {where}", file=out)
            out.flush()


if os.environ.get("TICKFLOW_SOAK_PROBE"):
    threading.Thread(target=_probe, args=(os.environ["TICKFLOW_SOAK_PROBE"],
                                          float(os.environ.get("TICKFLOW_SOAK_PROBE_S", "20"))),
                     name="tickflow-soak-probe", daemon=True).start()
