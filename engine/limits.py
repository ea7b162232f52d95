"""Upper bounds and a state-memory estimate, checked when a job compiles.

``window: 1000000000000`` or ``workers: 100000`` used to validate and then end in a
``MemoryError`` traceback (or a machine swapping for minutes). Integer kernel and operator
parameters (windows, periods, lags) and the executor's sizes have upper bounds here, and each
kernel step's state is estimated from its declared layout (bytes per key x keys x worker lanes,
since every lane sizes its arrays to the key ids it has seen) and compared with the memory the
machine has available, before anything is allocated.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Report = Callable[[tuple[Any, ...], str], None]

MAX_PARAM_ROWS = 10_000_000
"""Largest integer kernel/operator parameter (a window of ten million rows per key)."""
MAX_WORKERS = 1_024
MAX_MORSEL_ROWS = 10_000_000
MAX_PARTITIONS = 65_536
MIN_STATE_KEYS = 8
"""Every state array holds at least this many keys (engine/state/arrays.py)."""


def _is_count(annotation: Any, metadata: list[Any]) -> bool:
    """An ``int`` parameter, or a ``Window`` (row count or duration): a size, not a label."""
    if any(getattr(m, "func", None) is not None and m.func.__name__ == "_check_window"
           for m in metadata):
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation is int or args == [int]


def check_param_bounds(params: Any, where: tuple[Any, ...], label: str,
                       report: Report) -> None:
    """Integer size parameters above :data:`MAX_PARAM_ROWS` are refused, located at the key."""
    for name, value in _oversized(params):
        report((*where, "params", name), f"expected an integer <= {MAX_PARAM_ROWS:,}, "
                                         f"found {value:,} ({label})")


def _oversized(params: Any) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for name, info in type(params).model_fields.items():
        value = getattr(params, name, None)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if _is_count(info.annotation, list(info.metadata)) and value > MAX_PARAM_ROWS:
            out.append((name, value))
    return out


def check_executor_bounds(spec: Any, report: Report) -> None:
    """workers, morsel_rows and partitions within what one machine or cluster can use."""
    ex = spec.executor
    for name, value, limit in (("workers", ex.workers, MAX_WORKERS),
                               ("morsel_rows", ex.morsel_rows, MAX_MORSEL_ROWS),
                               ("partitions", ex.partitions, MAX_PARTITIONS)):
        if value > limit:
            report(("executor", name), f"expected an integer <= {limit:,}, found {value:,}")


def state_bytes_per_key(step: Any) -> int:
    """Bytes of one key's state for a kernel step, from its declared fields (growable time
    windows counted at their initial capacity)."""
    fields = step.definition.state(step.params) if step.has_kernel_state else []
    total = 0
    for f in fields:
        total += int(np.prod(f.shape, dtype=np.float64)) * np.dtype(f.dtype).itemsize
    return total


def expected_keys(sources: list[Any]) -> int:
    """Keys a job will see, when its sources' configs say (``ConnectorConfig.expected_keys``:
    simulated symbols, subscribed products); else the minimum."""
    counts = (use.config.expected_keys() for use in sources)
    return max([MIN_STATE_KEYS, *(k for k in counts if k is not None)])


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit."""
    best: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                best = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            room = int(limit) - used
            best = room if best is None else min(best, room)
    except (OSError, ValueError):
        pass
    return best


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"


def check_state_memory(steps: list[tuple[tuple[Any, ...], Any]], lanes: int, keys: int,
                       report: Report, available: int | None = None) -> None:
    """Refuse a step whose state estimate exceeds the memory available, naming the step.

    Args:
        steps: ``(path of the step in the job, BoundKernel)`` pairs.
        lanes: worker lanes that each hold every step's state.
        keys: expected number of keys.
        report: where problems go.
        available: bytes available (default: measured now).
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    total = 0
    for where, step in steps:
        per_key = state_bytes_per_key(step)
        need = per_key * keys * lanes
        total += need
        if need > available:
            report(where, f"step '{step.step_id}' (kernel {step.definition.name}) needs about "
                          f"{human_bytes(need)} of state ({human_bytes(per_key)} per key x "
                          f"{keys:,} keys x {lanes:,} worker lanes), more than the "
                          f"{human_bytes(available)} of memory available; use a smaller "
                          f"window or fewer workers")
            return
    if total > available and steps:
        where, step = max(steps, key=lambda s: state_bytes_per_key(s[1]))
        report(where, f"the job's kernel steps need about {human_bytes(total)} of state "
                      f"together ({keys:,} keys x {lanes:,} worker lanes), more than the "
                      f"{human_bytes(available)} of memory available; the largest is step "
                      f"'{step.step_id}' (kernel {step.definition.name})")


def default_lanes() -> int:
    """Kernel lanes for ``workers: 0``: one per CPU core but one, which the read-ahead and
    writer threads need (on 2 cores one lane ran the research job 1.1x faster, whole process,
    on 16% less CPU than two: docs/performance.md)."""
    return max(1, (os.cpu_count() or 1) - 1)


def worker_lanes(spec: Any, workers: int | None = None) -> int:
    """Lanes the local executor will use: ``--workers``, else ``executor.workers``, else
    :func:`default_lanes`."""
    return max(1, workers or spec.executor.workers or default_lanes())


def check_job_limits(spec: Any, sources: list[Any], steps: list[tuple[tuple[Any, ...], Any]],
                     report: Report, workers: int | None = None) -> None:
    """The executor's bounds, then the kernel steps' state against available memory."""
    check_executor_bounds(spec, report)
    kernels = [(where, b) for where, b in steps  # oversized params are reported already
               if b.has_kernel_state and not _oversized(b.params)]
    lanes = min(worker_lanes(spec, workers), MAX_WORKERS)
    check_state_memory(kernels, lanes, expected_keys(sources), report)


def workers_option_problems(job: Any, workers: int) -> list[Any]:
    """``run-job JOB --workers N``: N within bounds, and the state of N lanes fits in memory."""
    from tickflow.engine.errors import Problem

    problems: list[Problem] = []

    def report(path: tuple[Any, ...], message: str) -> None:
        problems.append(Problem("--workers", None, None, "", message))

    if not 0 <= workers <= MAX_WORKERS:
        report((), f"expected an integer from 0 (one per CPU core but one) to "
                   f"{MAX_WORKERS:,}, found {workers:,}")
        return problems
    kernels = [((), s) for s in job.steps if s.has_kernel_state]
    check_state_memory(kernels, worker_lanes(job.spec, workers), expected_keys(job.sources),
                       report)
    return problems
