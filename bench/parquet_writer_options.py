"""Parquet writer options on the research output: the CPU of writing it, option by option.

The research job's output (5M ticks: 55 columns, about 2 GB uncompressed) is written again
in the 65,536-row batches the sink receives, by ``pq.ParquetWriter`` with each set of options
below, each write in a fresh child process (so one write's page cache and allocator do not
help the next), the options alternated round by round. The child reports the CPU seconds
(user and system, all threads) of the write alone, reading the input excluded, and the file
size. Every output is checked to read back equal to the input (values and schema).

Usage::

    .venv/bin/python bench/parquet_writer_options.py OUT/research_features.parquet --rounds 3
    .venv/bin/python bench/parquet_writer_options.py FEATURES --only sink,no_dict_symbol
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRINGS = ["symbol", "exchange"]
INTS = ["cusum_alarm", "buy", "sell", "regime_change"]
SINK = {"use_dictionary": STRINGS, "write_statistics": False, "compression": None}
OPTIONS: dict[str, dict] = {
    "sink": {},  # the sink's settings: dictionary on strings only, no statistics, none
    "no_dict": {"use_dictionary": False},
    "store_schema_off": {"store_schema": False},
    "page_8mb": {"data_page_size": 8 << 20},
    "page_64kb": {"data_page_size": 64 << 10},
    "batch_16k": {"write_batch_size": 16_384},
    "batch_64k": {"write_batch_size": 65_536},
    "batch_256k": {"write_batch_size": 262_144},
    "batch_64k_page_v2": {"write_batch_size": 65_536, "data_page_version": "2.0"},
    "rg_1m": {"row_group_rows": 1 << 20},
    "rg_64k": {"row_group_rows": 1 << 16},
    "page_index": {"write_page_index": True},
    "stats": {"write_statistics": True},
    "dict_all": {"use_dictionary": True},
    "delta_ints": {"column_encoding": {"timestamp": "DELTA_BINARY_PACKED",
                                       "sequence": "DELTA_BINARY_PACKED",
                                       **{c: "DELTA_BINARY_PACKED" for c in INTS}}},
    "dict_int8": {"use_dictionary": STRINGS + INTS},
    "delta_ints_batch_64k": {"write_batch_size": 65_536,
                             "column_encoding": {"timestamp": "DELTA_BINARY_PACKED",
                                                 "sequence": "DELTA_BINARY_PACKED",
                                                 **{c: "DELTA_BINARY_PACKED" for c in INTS}}},
    "bss_floats": {"use_byte_stream_split": True},
}


def bit_identical(a, b) -> bool:
    """Same schema and the same values bit for bit (NaN payloads and -0.0 included)."""
    import pyarrow as pa

    if not a.schema.equals(b.schema, check_metadata=False):
        return False
    for x, y in zip(a.columns, b.columns, strict=True):
        if pa.types.is_floating(x.type):
            x = pa.chunked_array([c.view(pa.int64()) for c in x.chunks], pa.int64())
            y = pa.chunked_array([c.view(pa.int64()) for c in y.chunks], pa.int64())
        if not x.equals(y):
            return False
    return True


def child(path: str, name: str, out: str, check: bool = True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    batches = table.to_batches(max_chunksize=65_536)
    opts = {**SINK, **OPTIONS[name]}
    rg = opts.pop("row_group_rows", 262_144)
    if opts.get("use_byte_stream_split") is True:
        opts["use_byte_stream_split"] = [f.name for f in table.schema
                                     if pa.types.is_floating(f.type)]
    if "column_encoding" in opts:
        opts["use_dictionary"] = [c for c in opts["use_dictionary"]
                                  if c not in opts["column_encoding"]]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    writer = pq.ParquetWriter(out, table.schema, **opts)
    pending: list = []
    rows = 0
    for b in batches:  # as AtomicParquetWriter does: whole row groups of ``rg`` rows
        pending.append(b)
        rows += b.num_rows
        if rows >= rg:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=rg)
            pending, rows = [], 0
    if pending:
        writer.write_table(pa.Table.from_batches(pending), row_group_size=rg)
    writer.close()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    same = bit_identical(pq.read_table(out), table) if check else None
    print(json.dumps({"user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                      "wall": wall, "size": os.path.getsize(out), "same": same}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("features")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated option sets (default: all)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip reading each output back (faster rounds)")
    ap.add_argument("--child", nargs=2, metavar=("NAME", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.features, *args.child, check=not args.no_check)
        return 0
    names = args.only.split(",") if args.only else list(OPTIONS)
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="tickflow-wopts-", dir=os.environ.get("WDIR")) as d:
        for _ in range(args.rounds):
            for name in names:
                out = str(Path(d) / "out.parquet")
                extra = ["--no-check"] if args.no_check else []
                proc = subprocess.run([sys.executable, __file__, args.features, "--child", name,
                                       out, *extra], check=True, capture_output=True, text=True)
                results[name].append(json.loads(proc.stdout))
                os.unlink(out)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds, medians")
    print("| options | user s | user min-max | sys s | CPU s | wall s | size MB | same |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        rs = results[name]
        med = {k: statistics.median(r[k] for r in rs) for k in ("user", "sys", "wall", "size")}
        cpu = statistics.median(r["user"] + r["sys"] for r in rs)
        users = [r["user"] for r in rs]
        same = "-" if args.no_check else all(r["same"] for r in rs)
        print(f"| {name} | {med['user']:.2f} | {min(users):.2f}-{max(users):.2f} "
              f"| {med['sys']:.2f} | {cpu:.2f} | {med['wall']:.2f} "
              f"| {med['size'] / 1e6:,.0f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
