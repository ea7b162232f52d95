"""Time the research report alone on a research output: ``python bench/research_report_cost.py
OUT.parquet [REPORT.html]``. Reading the Parquet is not counted; feeding the sink (per batch)
and closing it (statistics, correlations, HTML) are, separately, in wall and CPU seconds (CPU
is the steadier figure on a shared machine). ``open`` is not called, so Bokeh's import, which
a run overlaps with its computing, is counted in full in ``close``. pandas is imported first:
a run has imported it before the sink sees a batch (pyarrow imports it on first use), so the
first write would otherwise pay for an import the run pays for anyway."""

from __future__ import annotations

import sys
import time

import pandas  # noqa: F401  (see the docstring)
import pyarrow.parquet as pq

from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink


def main(path: str, report: str = "/tmp/research_report_cost.html") -> None:
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=report),
                              RunContext(job_name="cost", quiet=True))
    fed = fed_cpu = 0.0
    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        start, cpu = time.perf_counter(), time.process_time()
        sink.write(batch)
        fed += time.perf_counter() - start
        fed_cpu += time.process_time() - cpu
        rows += batch.num_rows
    start, cpu = time.perf_counter(), time.process_time()
    sink.close()
    closed, closed_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{rows:,} rows: write {fed:.2f} s ({fed_cpu:.2f} s CPU), close (stats + HTML) "
          f"{closed:.2f} s ({closed_cpu:.2f} s CPU), total {fed + closed:.2f} s "
          f"({fed_cpu + closed_cpu:.2f} s CPU)")


if __name__ == "__main__":
    main(*sys.argv[1:])
