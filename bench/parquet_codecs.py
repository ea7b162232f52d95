"""Parquet sink codecs on the research output: write speed, read speed and file size.

The research job's output (52 feature columns beside the ticks) is written again with each
codec through the sink's own writer (``AtomicParquetWriter``: string columns dictionary-encoded,
no statistics, 262,144-row row groups, published in place), in the 65,536-row morsels the
sink receives. Each codec is written ``--repeats`` times, alternating codecs, and the fastest
write counts (the machine may be shared); reading is ``pq.read_table`` of the whole file.

Usage::

    .venv/bin/python bench/parquet_codecs.py                      # 5M generated ticks, 14 symbols
    .venv/bin/python bench/parquet_codecs.py --features out/research_features.parquet

Without ``--features`` the ticks are simulated and the research job (without its report) is
run once, as whole ``run-job`` processes, to make the output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
CODECS: list[tuple[str, int | None]] = [("none", None), ("snappy", None), ("lz4", None),
                                        ("zstd", 1), ("zstd", 3), ("zstd", 9)]


def make_features(rows: int, symbols: int, workdir: Path) -> Path:
    """Simulated ticks through the research job (without its report), as whole processes."""
    ticks, out = workdir / "ticks.parquet", workdir / "out"
    cli = [sys.executable, "-m", "tickflow.engine.cli"]
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(out)}
    subprocess.run([*cli, "simulate", "--symbols", str(symbols), "--rows", str(rows),
                    "-o", str(ticks)], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "run", "jobs/research.yaml", "--set", "report=null", "-q"],
                   check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return out / "research_features.parquet"


def write_once(table: pa.Table, path: Path, codec: str, level: int | None) -> float:
    from tickflow.connectors.parquet import AtomicParquetWriter

    t0 = time.perf_counter()
    writer = AtomicParquetWriter(path, table.schema, compression=codec, compression_level=level)
    for batch in table.to_batches(max_chunksize=65_536):
        writer.write(batch)
    writer.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", help="a research output to rewrite (default: make one)")
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--symbols", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tickflow-codecs-") as tmp:
        workdir = Path(tmp)
        if args.features:
            source = Path(args.features)
        else:
            print(f"making the research output of {args.rows:,} simulated ticks ...",
                  file=sys.stderr)
            source = make_features(args.rows, args.symbols, workdir)
        table = pq.read_table(source)
        rows = table.num_rows
        print(f"{rows:,} rows x {table.num_columns} columns, "
              f"{table.nbytes / 1e9:.2f} GB in memory", file=sys.stderr)
        best: dict[tuple[str, int | None], float] = {}
        for _ in range(args.repeats):
            for codec, level in CODECS:
                path = workdir / f"{codec}{level or ''}.parquet"
                seconds = write_once(table, path, codec, level)
                best[codec, level] = min(best.get((codec, level), seconds), seconds)
        del table
        print("\n| codec | write (s) | write (M rows/s) | read (s) | size (MB) | bytes/row |")
        print("|---|---:|---:|---:|---:|---:|")
        for codec, level in CODECS:
            path = workdir / f"{codec}{level or ''}.parquet"
            t0 = time.perf_counter()
            pq.read_table(path)
            read_s = time.perf_counter() - t0
            size = path.stat().st_size
            name = codec if level is None else f"{codec} level {level}"
            print(f"| {name} | {best[codec, level]:.2f} | {rows / best[codec, level] / 1e6:.2f} "
                  f"| {read_s:.2f} | {size / 1e6:,.0f} | {size / rows:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
