"""Kernels that declare categorical outputs write them as dictionary strings."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.engine.cli import main


def test_triangular_route_is_written_as_strings(tmp_path: Path) -> None:
    job = tmp_path / "tri.yaml"
    out = tmp_path / "tri.parquet"
    job.write_text(f"""\
name: tri
mode: research
sources: [{{kind: simulator, rows: 500, symbols: 2}}]
steps:
  - kernel: triangular_arbitrage
    inputs: {{rate_ab: best_bid, rate_bc: best_ask, rate_ac: price}}
    params: {{fee_bps: 0}}
    outputs: {{tri_route: route}}
sinks: [{{kind: parquet, path: {out}}}]
""")
    assert main([str(job), "--quiet"]) == 0
    table = pq.read_table(out)
    assert pa.types.is_dictionary(table.schema.field("route").type)
    routes = set(table.column("route").to_pylist())
    assert routes <= {"none", "A>B>C>A", "A>C>B>A"} and routes
