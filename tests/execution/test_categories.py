"""Kernels that declare categorical outputs write them as dictionary strings, each row's label
the one its code means."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tickflow.engine.cli import main

# (rate_ab, rate_bc, rate_ac) -> the route each row must get with fee 0:
# ab * bc = 6; ac below 6 makes the forward loop pay, above 6 the reverse, 6 neither.
ROWS = [
    ((2.0, 3.0, 5.94), "A>B>C>A"),  # fwd = 6 / 5.94 - 1 = +101 bps
    ((2.0, 3.0, 6.06), "A>C>B>A"),  # rev = 6.06 / 6 - 1 = +100 bps
    ((2.0, 3.0, 6.0), "none"),      # edge 0
    ((2.0, 3.0, 0.0), "none"),      # zero rate_ac: edge NaN
    ((4.0, 0.5, 1.9), "A>B>C>A"),
    ((4.0, 0.5, 2.2), "A>C>B>A"),
]


def test_triangular_route_is_written_as_strings(tmp_path: Path) -> None:
    rates = tmp_path / "rates.parquet"
    pq.write_table(pa.table({
        "timestamp": pa.array([1_700_000_000_000_000 + i * 1_000_000 for i in range(len(ROWS))],
                              pa.timestamp("us", tz="UTC")),
        "symbol": ["TRI"] * len(ROWS),
        "ab": [r[0][0] for r in ROWS], "bc": [r[0][1] for r in ROWS],
        "ac": [r[0][2] for r in ROWS]}), rates)
    job = tmp_path / "tri.yaml"
    out = tmp_path / "tri.parquet"
    job.write_text(f"""\
name: tri
mode: research
sources: [{{kind: parquet, path: {rates}}}]
steps:
  - kernel: triangular_arbitrage
    inputs: {{rate_ab: ab, rate_bc: bc, rate_ac: ac}}
    params: {{fee_bps: 0}}
    outputs: {{tri_route: route}}
sinks: [{{kind: parquet, path: {out}}}]
""")
    assert main([str(job), "--quiet"]) == 0
    table = pq.read_table(out)
    assert pa.types.is_dictionary(table.schema.field("route").type)
    assert table.column("route").to_pylist() == [r[1] for r in ROWS]
