"""tickflow's research job against the same core features in pandas and in polars.

One generated tick file (``write_simulated_parquet``), each engine end to end Parquet to
Parquet in its own subprocess (so that peak RSS is per engine), then a value check on the
columns all engines computed, and the targets of the issue:

- tickflow end to end >= 2,000,000 ticks/s and >= 4x polars;
- kernel compute alone (``Pipeline.process`` on batches already in memory) >= 5,000,000 ticks/s;
- ``--memory-check``: tickflow alone on a large input (the issue: 50M rows) under 2 GB peak RSS.

Usage::

    .venv/bin/python bench/research_vs_peers.py                      # 10M ticks, all engines
    .venv/bin/python bench/research_vs_peers.py --rows 1000000       # quick
    .venv/bin/python bench/research_vs_peers.py --skip-pandas        # pandas takes minutes at 10M
    .venv/bin/python bench/research_vs_peers.py --memory-check --rows 50000000

The peers compute every core column of ``jobs/features/core.yaml`` except ``cvar`` (pandas
and polars have no vectorised rolling tail mean; ``rolling().apply`` would dominate the run).
``cusum_stat``/``cusum_alarm`` (reset after an alarm is path dependent) use a plain Python
loop per symbol in both peers: neither library has a vectorised form.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from research_check import WARMUP_PER_SYMBOL, compare  # noqa: E402  (modules beside this file)
from research_peers import MATCHED_WRITER, run_pandas, run_polars  # noqa: E402

JOB = ROOT / "jobs" / "research.yaml"
WARMUP_ROWS = 50_000
TARGET_E2E = 2_000_000
TARGET_KERNELS = 5_000_000
TARGET_VS_POLARS = 4.0
TARGET_RSS_BYTES = 2 * 1024**3


# =========================================================================== tickflow


def _compile(ticks: Path, outdir: Path, workers: int, report: bool) -> Any:
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job

    overrides = [f"executor.workers={workers}"]
    if not report:
        overrides.append("report=null")
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(outdir)}
    return compile_job(load_job(str(JOB), overrides=overrides, env=env))


def run_tickflow(src: Path, out_dir: Path, warm: Path, workers: int,
                 report: bool) -> dict[str, Any]:
    from tickflow.engine.executors.local import run_local

    # Warm-up on a tiny file: loads the numba kernels (from numba's cache, or compiles them on
    # the very first run) so that JIT time is not in the timed run.
    tw = time.perf_counter()
    run_local(_compile(warm, out_dir / "warmup", workers, report))
    warm_s = time.perf_counter() - tw
    t0 = time.perf_counter()
    job = _compile(src, out_dir, workers, report)
    summary = run_local(job)
    t1 = time.perf_counter()
    return {"rows": summary.rows, "seconds": t1 - t0, "run_local_s": summary.seconds,
            "warmup_s": warm_s, "features": [c for s in job.steps for c in s.output_columns],
            "signals": summary.signal_counts}


def run_kernels(src: Path, out_dir: Path, warm: Path, workers: int) -> dict[str, Any]:
    """Pipeline.process over batches already in memory: kernels, sharding and output assembly
    (and the signal rules), no Parquet reading or writing."""
    from tickflow.engine.executors.local import Pipeline

    morsel = 65_536
    warm_table = pq.read_table(warm)
    job = _compile(src, out_dir, workers, report=False)
    morsel = job.spec.executor.morsel_rows or morsel
    warm_pipe = Pipeline(job, workers)
    for b in warm_table.to_batches(max_chunksize=morsel):
        warm_pipe.process(b)
    warm_pipe.close()
    batches = pq.read_table(src).combine_chunks().to_batches(max_chunksize=morsel)
    rows = sum(b.num_rows for b in batches)
    pipe = Pipeline(job, workers)
    t0 = time.perf_counter()
    for b in batches:
        pipe.process(b)
    t1 = time.perf_counter()
    pipe.close()
    return {"rows": rows, "seconds": t1 - t0, "morsel_rows": morsel}


# =========================================================================== child entry


def child(args: argparse.Namespace) -> None:
    src, out = Path(args.input), Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    if args.child == "pandas":
        res = run_pandas(src, out / "pandas_features.parquet", args.peer_writer)
    elif args.child == "polars":
        res = run_polars(src, out / "polars_features.parquet", args.peer_writer)
    elif args.child == "tickflow":
        res = run_tickflow(src, out, Path(args.warm), args.workers, not args.no_report)
    elif args.child == "kernels":
        res = run_kernels(src, out / "kernels", Path(args.warm), args.workers)
    else:
        raise SystemExit(f"unknown engine {args.child}")
    print("RESULT " + json.dumps(res), flush=True)


def spawn(engine: str, args: argparse.Namespace, src: Path, outdir: Path,
          warm: Path) -> dict[str, Any]:
    """Run one engine in a fresh interpreter; returns its result plus its own peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--input", str(src),
           "--outdir", str(outdir), "--warm", str(warm), "--workers", str(args.workers),
           "--peer-writer", args.peer_writer]
    if args.no_report:
        cmd.append("--no-report")
    log = outdir / f"{engine}.log"
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"  running {engine} ...", file=sys.stderr, flush=True)
    wall0 = time.perf_counter()
    with open(log, "w+") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fh.seek(0)
        text = fh.read()
    wall = time.perf_counter() - wall0
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(text.splitlines()[-25:])
        print(f"  !! {engine} failed (exit {proc.returncode}); last lines of {log}:\n{tail}",
              file=sys.stderr)
        return {"engine": engine, "error": f"exit {proc.returncode}", "rss": usage.ru_maxrss * 1024}
    res = json.loads(lines[-1][len("RESULT "):])
    res.update(engine=engine, rss=usage.ru_maxrss * 1024, process_wall_s=wall)
    return res


# =========================================================================== parent


def machine() -> str:
    import numba
    import pandas as pd
    import polars as pl

    try:
        from tickflow.engine import __version__ as tf_version
    except ImportError:
        tf_version = "?"
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: nproc={nproc} cpu={cpu!r} {platform.system()} {platform.release()}\n"
            f"python {platform.python_version()}; tickflow {tf_version}; numpy {np.__version__}; "
            f"numba {numba.__version__}; pyarrow {pa.__version__}; pandas {pd.__version__}; "
            f"polars {pl.__version__}")


def fmt_bytes(n: float) -> str:
    return f"{n / 1024**2:,.0f} MB"


def print_table(results: list[dict[str, Any]]) -> None:
    polars = next((r for r in results if r["engine"] == "polars" and "error" not in r), None)
    header = f"{'engine':<22}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'vs polars':>11}" \
             f"{'peak RSS':>12}  features"
    print(header)
    print("-" * len(header))
    for r in results:
        label = LABELS.get(r["engine"], r["engine"])
        if "error" in r:
            print(f"{label:<22}{'-':>12}{'-':>10}{'FAILED':>14}{'':>11}{fmt_bytes(r['rss']):>12}"
                  f"  {r['error']}")
            continue
        rate = r["rows"] / r["seconds"]
        ratio = f"{rate / (polars['rows'] / polars['seconds']):.2f}x" if polars else "-"
        nfeat = len(r["features"]) if "features" in r else "-"
        print(f"{label:<22}{r['rows']:>12,}{r['seconds']:>10.2f}{rate:>14,.0f}{ratio:>11}"
              f"{fmt_bytes(r['rss']):>12}  {nfeat}")


LABELS = {"tickflow": "tickflow (end to end)", "kernels": "tickflow kernels only",
          "pandas": "pandas", "polars": "polars"}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--symbols", type=int, default=14)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", metavar="DIR", help="keep input and outputs in DIR")
    ap.add_argument("--skip-pandas", action="store_true", help="pandas takes minutes at 10M")
    ap.add_argument("--skip-polars", action="store_true")
    ap.add_argument("--check-rows", type=int, default=200_000,
                    help="compare values on the first N output rows (default 200000)")
    ap.add_argument("--strict", action="store_true", help="exit 1 on a mismatch or a MISS")
    ap.add_argument("--no-report", action="store_true",
                    help="drop the job's HTML report (tickflow then writes Parquet only, "
                         "like the peers)")
    ap.add_argument("--peer-writer", choices=("matched", "default"), default="matched",
                    help="peers' Parquet writer: settings matched to tickflow's (default) "
                         "or each library's defaults")
    ap.add_argument("--memory-check", action="store_true",
                    help="run tickflow alone on --rows ticks and report its peak RSS "
                         "(target < 2 GB at 50M rows)")
    ap.add_argument("--whole-process", action="store_true",
                    help="time whole processes instead, as the user waits: run-job against "
                         "the polars script (and pandas unless --skip-pandas), paired A B A B "
                         "(research_whole_process.py)")
    ap.add_argument("--pairs", type=int, default=5, help="--whole-process: A B pairs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    ap.add_argument("--warm", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.whole_process:
        from research_whole_process import main as whole_process

        return whole_process(["--rows", str(args.rows), "--symbols", str(args.symbols),
                              "--pairs", str(args.pairs)]
                             + ([] if args.skip_pandas else ["--pandas"])
                             + (["--no-report"] if args.no_report else []))

    from tickflow.connectors.simulator import write_simulated_parquet

    print(machine())
    tmp = None
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tickflow-bench-")
        work = Path(tmp.name)
    try:
        src, warm = work / "ticks.parquet", work / "warmup_ticks.parquet"
        t = time.perf_counter()
        write_simulated_parquet(src, rows=args.rows, symbols=args.symbols, seed=args.seed)
        write_simulated_parquet(warm, rows=WARMUP_ROWS, symbols=args.symbols, seed=args.seed + 1)
        print(f"input: {args.rows:,} ticks, {args.symbols} symbols, seed {args.seed} "
              f"({src.stat().st_size / 1024**2:,.0f} MB, generated in "
              f"{time.perf_counter() - t:.1f} s); workers={args.workers}")
        print(f"tickflow: {JOB.relative_to(ROOT)} with executor.workers={args.workers}"
              f"{', report dropped' if args.no_report else ', HTML report included'}; "
              f"a {WARMUP_ROWS:,}-row warm-up run first in the same process (numba JIT/cache "
              f"load not timed)")
        out = work / "out"
        if args.memory_check:
            r = spawn("tickflow", args, src, out / "tickflow", warm)
            print()
            print_table([r])
            ok = "error" not in r and r["rss"] < TARGET_RSS_BYTES
            print(f"\nbounded memory: peak RSS {fmt_bytes(r['rss'])} on {args.rows:,} rows "
                  f"(target < 2 GB at 50M rows): {verdict(ok)}")
            return 1 if args.strict and not ok else 0

        engines = ["tickflow", "kernels"]
        if not args.skip_polars:
            engines.append("polars")
        if not args.skip_pandas:
            engines.append("pandas")
        results = [spawn(e, args, src, out / e, warm) for e in engines]
        print()
        print_table(results)
        by = {r["engine"]: r for r in results if "error" not in r}
        for e in ("tickflow", "pandas", "polars"):
            if e in by:
                extra = {k: round(v, 2) for k, v in by[e].items()
                         if k.endswith("_s") and isinstance(v, float)}
                print(f"  {e} phases (s): {extra}")
        print(f"  peers' writer: {args.peer_writer}"
              f"{' ' + json.dumps(MATCHED_WRITER) if args.peer_writer == 'matched' else ''}; "
              f"seconds = read + compute + write inside the engine's process "
              f"(interpreter start and imports excluded); peak RSS per engine process")

        # ---- targets
        print()
        tf, kn, pl_ = by.get("tickflow"), by.get("kernels"), by.get("polars")
        ok_all = True
        if tf:
            rate = tf["rows"] / tf["seconds"]
            ok = rate >= TARGET_E2E
            ok_all &= ok
            print(f"target: tickflow end to end >= {TARGET_E2E:,} ticks/s: {rate:,.0f} "
                  f"{verdict(ok)}")
            if pl_:
                ratio = rate / (pl_["rows"] / pl_["seconds"])
                ok = ratio >= TARGET_VS_POLARS
                ok_all &= ok
                print(f"target: tickflow >= {TARGET_VS_POLARS:g}x polars: {ratio:.2f}x "
                      f"{verdict(ok)}")
        else:
            ok_all = False
            print("target: tickflow end to end: NOT MEASURED (run failed)")
        if kn:
            rate = kn["rows"] / kn["seconds"]
            ok = rate >= TARGET_KERNELS
            ok_all &= ok
            print(f"target: kernel compute alone >= {TARGET_KERNELS:,} ticks/s: {rate:,.0f} "
                  f"{verdict(ok)}")
        else:
            ok_all = False
            print("target: kernel compute alone: NOT MEASURED (run failed)")

        # ---- agreement
        outputs: dict[str, Path] = {}
        if tf:
            outputs["tickflow"] = out / "tickflow" / "research_features.parquet"
        if pl_:
            outputs["polars"] = out / "polars" / "polars_features.parquet"
        if "pandas" in by:
            outputs["pandas"] = out / "pandas" / "pandas_features.parquet"
        agree = True
        if len(outputs) >= 2:
            check = min(args.check_rows, args.rows)
            print(f"\nagreement on the first {check:,} output rows (reference: "
                  f"{next(iter(outputs))}; rtol 1e-6; NaN positions compared after each "
                  f"symbol's first {WARMUP_PER_SYMBOL} rows)")
            table, agree, missing = compare(outputs, src, check)
            print(f"  not compared (not computed by every engine): "
                  f"{', '.join(missing) or 'none'}")
            w = max(len(c) for c, _, _ in table)
            for col, status, detail in table:
                print(f"  {col:<{w}}  {status:<8}  {detail}")
            if agree:
                print(f"all {len(table)} common columns agree")
            else:
                bad = [c for c, s, _ in table if s != "OK"]
                print(f"\n!!!! DISAGREEMENT in {len(bad)} column(s): {', '.join(bad)} !!!!")
        return 1 if args.strict and not (agree and ok_all) else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
