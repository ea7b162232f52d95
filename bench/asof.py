"""As-of join throughput: tickflow's ``asof_join`` against pandas ``merge_asof`` and polars
``join_asof``, on the same two inputs, checking that all three give the same rows.

Usage::

    .venv/bin/python bench/asof.py                       # 2 x 10M rows, 14 keys, backward
    .venv/bin/python bench/asof.py --rows 1000000 --direction nearest --tolerance 2s
    .venv/bin/python bench/asof.py --skip-pandas         # pandas needs ~1 min at 10M rows

Data: two independent streams of ticks (left: trades with ``price``; right: quotes with
``bid``/``ask``), each ``--rows`` rows of ``--keys`` interleaved symbols with uneven activity,
times in microseconds with bursts of equal times (ties), sorted by time as every capture is.
Throughput is left rows per second (= output rows), with both inputs already in memory as
Arrow tables; conversions into each library's own frame are not timed. tickflow is timed twice:
``batch`` (each input pushed as one batch) and ``streaming`` (65,536-row batches of both
inputs, interleaved by time as the executor merges sources), one thread. polars uses its own
thread pool (all cores). Each engine runs ``--repeat`` times and the best time is kept (the
machine is shared, and the first run of each pays for first-touch page faults).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tickflow.engine.operators.testing import bind  # noqa: E402

US = 1_000_000


def make_side(n: int, keys: int, seed: int, values: tuple[str, ...]) -> pa.Table:
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, keys)
    names = np.array([f"SYM{k:02d}-USD" for k in range(keys)])
    codes = rng.choice(keys, size=n, p=weights / weights.sum())
    gaps = rng.exponential(2_000.0, n).astype(np.int64)  # ~500 rows/s
    gaps[rng.random(n) < 0.2] = 0  # bursts of equal times
    ts = 1_767_225_600 * US + np.cumsum(gaps)
    cols = {"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "symbol": pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                                     pa.array(names)).cast(pa.string())}
    base = 100.0 * (1 + np.arange(keys))[codes]
    for j, v in enumerate(values):
        cols[v] = pa.array(base * np.exp(rng.normal(0, 1e-3, n)) + j)
    return pa.table(cols)


def run_tickflow(left: pa.Table, right: pa.Table, params: dict, batch_rows: int | None,
                 ) -> tuple[float, pa.Table]:
    bound = bind("asof_join", {"left": left.schema.names, "right": right.schema.names},
                 params=params)
    op = bound.make()
    schema = op.bind({"left": left.schema, "right": right.schema})
    out: list[pa.RecordBatch] = []
    start = time.perf_counter()
    if batch_rows is None:
        out += op.push("left", left.combine_chunks().to_batches()[0])
        out += op.push("right", right.combine_chunks().to_batches()[0])
    else:
        parts = {p: t.to_batches(max_chunksize=batch_rows) for p, t in (("left", left),
                                                                        ("right", right))}
        firsts = {p: [b.column(0)[0].value for b in bs] for p, bs in parts.items()}
        pos = {"left": 0, "right": 0}
        while pos["left"] < len(parts["left"]) or pos["right"] < len(parts["right"]):
            ready = [p for p in pos if pos[p] < len(parts[p])]
            port = min(ready, key=lambda p: firsts[p][pos[p]])
            out += op.push(port, parts[port][pos[port]])
            pos[port] += 1
    out += op.end("left") + op.end("right")
    seconds = time.perf_counter() - start
    return seconds, pa.Table.from_batches(out, schema=schema)


def run_pandas(left: pa.Table, right: pa.Table, params: dict) -> tuple[float, np.ndarray]:
    import pandas as pd

    lf, rf = left.to_pandas(), right.to_pandas()
    tol = params.get("tolerance")
    start = time.perf_counter()
    res = pd.merge_asof(lf, rf, on="timestamp", by="symbol", direction=params["direction"],
                        tolerance=pd.Timedelta(tol) if tol else None)
    seconds = time.perf_counter() - start
    return seconds, res["bid"].to_numpy(dtype=float, na_value=np.nan)


def run_polars(left: pa.Table, right: pa.Table, params: dict) -> tuple[float, np.ndarray]:
    import polars as pl

    lf, rf = pl.from_arrow(left), pl.from_arrow(right)
    tol = params.get("tolerance")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sortedness cannot be checked" with `by`
        res = lf.join_asof(rf, on="timestamp", by="symbol", strategy=params["direction"],
                           tolerance=tol)
    seconds = time.perf_counter() - start
    return seconds, res["bid"].to_numpy().astype(float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of each input")
    ap.add_argument("--keys", type=int, default=14)
    ap.add_argument("--direction", choices=("backward", "forward", "nearest"),
                    default="backward")
    ap.add_argument("--tolerance", default=None, help="e.g. 2s (default: none)")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts")
    args = ap.parse_args()

    params = {"right": "quotes", "direction": args.direction}
    if args.tolerance:
        params["tolerance"] = args.tolerance
    left = make_side(args.rows, args.keys, 1, ("price",))
    right = make_side(args.rows, args.keys, 2, ("bid", "ask"))
    print(f"as-of join, {args.rows:,} + {args.rows:,} rows, {args.keys} keys, "
          f"direction={args.direction}, tolerance={args.tolerance or 'none'}")
    run_tickflow(left.slice(0, 20_000), right.slice(0, 20_000), params, None)  # JIT warm-up
    results: list[tuple[str, float, np.ndarray]] = []

    def best(run: Callable[[], tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        runs = [run() for _ in range(max(1, args.repeat))]
        return min(r[0] for r in runs), runs[-1][1]

    def tickflow(rows: int | None) -> Callable[[], tuple[float, np.ndarray]]:
        def run() -> tuple[float, np.ndarray]:
            seconds, table = run_tickflow(left, right, params, rows)
            return seconds, table.column("bid").to_numpy(zero_copy_only=False).astype(float)
        return run

    for label, rows in (("tickflow (batch, 1 thread)", None),
                        ("tickflow (streaming, 64K batches, 1 thread)", 65_536)):
        results.append((label, *best(tickflow(rows))))
    results.append(("polars join_asof", *best(lambda: run_polars(left, right, params))))
    if not args.skip_pandas:
        results.append(("pandas merge_asof", *best(lambda: run_pandas(left, right, params))))
    polars_rate = args.rows / next(s for lab, s, _ in results if lab.startswith("polars"))
    reference = results[0][2]
    print(f"\n| engine | best of {args.repeat} (s) | rows/s | vs polars | same rows as "
          f"tickflow |")
    print("|---|---:|---:|---:|---|")
    for label, seconds, bid in results:
        same = np.array_equal(bid, reference, equal_nan=True)
        rate = args.rows / seconds
        print(f"| {label} | {seconds:.2f} | {rate:,.0f} | {rate / polars_rate:.2f}x | "
              f"{'yes' if same else 'NO'} |")
    matched = np.isfinite(reference).mean()
    print(f"\nmatched left rows: {matched:.1%}; target: tickflow >= polars")


if __name__ == "__main__":
    main()
