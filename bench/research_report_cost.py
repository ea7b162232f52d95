"""Time the research report alone on a research output: ``python bench/research_report_cost.py
OUT.parquet [REPORT.html]``. Reading the Parquet is not counted; feeding the sink (per batch)
and closing it (statistics, correlations, HTML) are, separately."""

from __future__ import annotations

import sys
import time

import pyarrow.parquet as pq

from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink


def main(path: str, report: str = "/tmp/research_report_cost.html") -> None:
    sink = ResearchReportSink(ResearchReportConfig(kind="report", path=report),
                              RunContext(job_name="cost", quiet=True))
    fed = 0.0
    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        start = time.perf_counter()
        sink.write(batch)
        fed += time.perf_counter() - start
        rows += batch.num_rows
    start = time.perf_counter()
    sink.close()
    closed = time.perf_counter() - start
    print(f"{rows:,} rows: write {fed:.2f} s, close (stats + HTML) {closed:.2f} s, "
          f"total {fed + closed:.2f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
