"""Every stream's output as a table (tests and notebooks): the driver with collecting sinks.

The graph itself lives in ``engine/runtime/graph.py``; this module keeps the names older code
imported from here.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tickflow.engine.runtime.driver import Driver
from tickflow.engine.runtime.graph import StreamGraph, merged
from tickflow.engine.runtime.pipeline import RunSummary


class _Collector:
    """A sink keeping every batch in memory."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.schema: pa.Schema | None = None

    def open(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    def close(self) -> None:
        return None


def collect(job: Any, *, workers: int = 1, morsel_rows: int = 65_536) -> dict[str, pa.Table]:
    """Run a job and return every stream's output as a table."""
    collectors = {name: _Collector() for name in job.streams}
    driver = Driver(job, workers=workers, morsel_rows=morsel_rows,
                    sinks=[(c, name) for name, c in collectors.items()])
    driver.run()
    return {name: pa.Table.from_batches(c.batches, schema=c.schema)
            for name, c in collectors.items()}


def run_streams(job: Any, *, workers: int, morsel_rows: int,
                progress: Any = None) -> RunSummary:
    """Run a job to the end of its sources (the driver; kept for older callers)."""
    return Driver(job, workers=workers, morsel_rows=morsel_rows, progress=progress).run()


__all__ = ["StreamGraph", "collect", "merged", "run_streams"]
