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
import math
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

JOB = ROOT / "jobs" / "research.yaml"
WARMUP_ROWS = 50_000
TARGET_E2E = 2_000_000
TARGET_KERNELS = 5_000_000
TARGET_VS_POLARS = 4.0
TARGET_RSS_BYTES = 2 * 1024**3

# Writer settings the peers use by default ("matched"): dictionary only on the string columns,
# no statistics, no compression, 256K-row row groups -- tickflow's ParquetSink defaults, so that
# the comparison is about computing features rather than about Parquet writer defaults.
# `--peer-writer default` uses each library's own defaults instead (pandas -> pyarrow snappy;
# polars -> zstd).
MATCHED_WRITER = {"compression": "none", "use_dictionary": ["symbol", "exchange"],
                  "write_statistics": False, "row_group_size": 262_144}

RSI_PERIOD = 14
CUSUM_K, CUSUM_H = 0.0005, 0.01
WARMUP_PER_SYMBOL = 200   # rows of each symbol left out of the NaN-position comparison


# =========================================================================== shared helpers


def cusum_loop(values: np.ndarray, groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Page CUSUM with reset, one plain Python loop per symbol (no vectorised form)."""
    stat = np.full(values.shape[0], np.nan)
    alarm = np.zeros(values.shape[0], dtype=np.int8)
    k, h = CUSUM_K, CUSUM_H
    for idx in groups:
        sp = sn = 0.0
        st_out: list[float] = []
        al_out: list[int] = []
        for v in values[idx].tolist():
            if v != v:  # NaN: state unchanged
                st_out.append(math.nan)
                al_out.append(0)
                continue
            sp = max(0.0, sp + v - k)
            sn = max(0.0, sn - v - k)
            s = sp if sp > sn else sn
            st_out.append(s)
            if s > h:
                al_out.append(1)
                sp = sn = 0.0
            else:
                al_out.append(0)
        stat[idx] = st_out
        alarm[idx] = al_out
    return stat, alarm


def write_arrow(table: pa.Table, path: Path, writer: str) -> None:
    if writer == "matched":
        pq.write_table(table, path, **MATCHED_WRITER)
    else:
        pq.write_table(table, path)


# =========================================================================== pandas


def run_pandas(src: Path, out: Path, writer: str) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(src)
    t_read = time.perf_counter()
    sym = df["symbol"]

    def by(s: pd.Series, fn: Any) -> pd.Series:
        """fn applied to each symbol's rows (vectorised inside a symbol), in input order."""
        return s.groupby(sym, sort=False, observed=True).transform(fn)

    p, bid, ask = df["price"], df["best_bid"], df["best_ask"]
    qb, qa = df["best_bid_size"], df["best_ask_size"]
    f: dict[str, pd.Series] = {}
    prev = by(p, lambda s: s.shift(1))
    lr = np.log(p / prev)
    f["log_return"] = lr
    f["return"] = p / prev - 1.0
    f["ewma"] = by(p, lambda s: s.ewm(alpha=0.06, adjust=False).mean())
    f["ema"] = by(p, lambda s: s.ewm(span=12, adjust=False).mean())
    f["ema_26"] = by(p, lambda s: s.ewm(span=26, adjust=False).mean())
    f["sma"] = by(p, lambda s: s.rolling(20).mean())
    f["sma_50"] = by(p, lambda s: s.rolling(50).mean())
    # Rolling std of prices on the price minus the symbol's first price: the same shift the
    # kernels use, without which a 20-row std of a 3,000-dollar price loses ~5 digits.
    pc = p - by(p, "first")
    for w, name in ((100, "zscore"), (20, "zscore_20")):
        m = by(p, lambda s, w=w: s.rolling(w).mean())
        sd = by(pc, lambda s, w=w: s.rolling(w).std())
        # A constant window has std 0 and gives NaN. pandas' add/remove rolling variance drifts
        # over a long series and leaves up to ~1e-4 there (BTC, 1M rows), so constant windows
        # are found exactly, as max == min.
        flat = by(p, lambda s, w=w: s.rolling(w).max()) == by(p, lambda s, w=w: s.rolling(w).min())
        f[name] = ((p - m) / sd.where(sd != 0.0)).mask(flat)
    f["log_return_lag1"] = by(lr, lambda s: s.shift(1))
    f["log_return_lag2"] = by(lr, lambda s: s.shift(2))
    f["price_diff1"] = by(p, lambda s: s.diff(1))
    f["midprice"] = mid = (bid + ask) / 2.0
    f["mid_log_return"] = np.log(mid / by(mid, lambda s: s.shift(1)))
    tot = (qb + qa).where(qb + qa != 0.0)
    f["microprice"] = (bid * qa + ask * qb) / tot
    f["quoted_spread"] = (ask - bid) / f["midprice"] * 10_000.0
    f["l1_imbalance"] = (qb - qa) / tot
    pb, pa_ = by(bid, lambda s: s.shift(1)), by(ask, lambda s: s.shift(1))
    pqb, pqa = by(qb, lambda s: s.shift(1)), by(qa, lambda s: s.shift(1))
    e = ((bid >= pb) * qb - (bid <= pb) * pqb - (ask <= pa_) * qa + (ask >= pa_) * pqa)
    e = e.where(pb.notna())
    f["ofi"] = e
    f["ofi_10"] = by(e, lambda s: s.rolling(10).sum())
    r2 = lr * lr
    f["realized_var"] = by(r2, lambda s: s.rolling(20).sum())
    f["realized_var_100"] = by(r2, lambda s: s.rolling(100).sum())
    ar = lr.abs()
    pair = ar * by(ar, lambda s: s.shift(1))
    f["bipower_var"] = math.pi / 2.0 * by(pair, lambda s: s.rolling(20).sum())
    f["riskmetrics_vol"] = np.sqrt(by(r2, lambda s: s.ewm(alpha=0.06, adjust=False).mean()))
    f["log_return_std20"] = by(lr, lambda s: s.rolling(20).std())
    f["log_return_std100"] = by(lr, lambda s: s.rolling(100).std())
    macd = f["ema"] - f["ema_26"]
    sig = by(macd, lambda s: s.ewm(span=9, adjust=False).mean())
    f["macd"], f["macd_signal"], f["macd_hist"] = macd, sig, macd - sig
    # Wilder's RSI: SMA seed of the first `period` changes, then ewm(alpha=1/period).
    n = df.groupby(sym, sort=False, observed=True).cumcount()
    ch = by(p, lambda s: s.diff())
    avgs = []
    for part in (ch.clip(lower=0.0), (-ch).clip(lower=0.0)):
        seed = by(part, lambda s: s.rolling(RSI_PERIOD).mean())
        x = part.where(n > RSI_PERIOD, seed.where(n == RSI_PERIOD))
        avgs.append(by(x, lambda s: s.ewm(alpha=1.0 / RSI_PERIOD, adjust=False).mean()))
    gain, loss = avgs
    total = gain + loss
    f["rsi"] = (100.0 * gain / total.where(total != 0.0)).mask(total == 0.0, 0.0)
    f["bb_mid"] = f["sma"]
    sd0 = by(pc, lambda s: s.rolling(20).std(ddof=0))
    f["bb_upper"], f["bb_lower"] = f["sma"] + 2.0 * sd0, f["sma"] - 2.0 * sd0
    lagged = by(lr, lambda s: s.shift(5))
    ac = pd.Series(np.nan, index=df.index)
    for idx in df.groupby(sym, sort=False, observed=True).indices.values():
        ac.iloc[idx] = lr.iloc[idx].rolling(100).corr(lagged.iloc[idx]).to_numpy()
    f["log_return_autocorr5"] = ac
    f["mean"] = by(p, lambda s: s.expanding().mean())
    f["variance"] = by(p, lambda s: s.expanding().var())
    f["stddev"] = np.sqrt(f["variance"])
    f["pnl"] = by(lr, lambda s: s.cumsum())
    groups = list(df.groupby(sym, sort=False, observed=True).indices.values())
    stat, alarm = cusum_loop(lr.to_numpy(), groups)
    f["cusum_stat"], f["cusum_alarm"] = pd.Series(stat, index=df.index), pd.Series(alarm,
                                                                                   index=df.index)
    f["var"] = -by(lr, lambda s: s.rolling(100).quantile(0.05, interpolation="linear"))
    t_comp = time.perf_counter()
    out_df = pd.concat([df, pd.DataFrame(f)], axis=1)
    write_arrow(pa.Table.from_pandas(out_df, preserve_index=False), out, writer)
    t1 = time.perf_counter()
    return {"rows": len(df), "seconds": t1 - t0, "read_s": t_read - t0,
            "compute_s": t_comp - t_read, "write_s": t1 - t_comp, "features": list(f)}


# =========================================================================== polars


def run_polars(src: Path, out: Path, writer: str) -> dict[str, Any]:
    import polars as pl

    t0 = time.perf_counter()
    S = "symbol"
    p, bid, ask = pl.col("price"), pl.col("best_bid"), pl.col("best_ask")
    qb, qa = pl.col("best_bid_size"), pl.col("best_ask_size")
    lr = pl.col("log_return")
    prev = p.shift(1).over(S)
    pb, pa_ = bid.shift(1).over(S), ask.shift(1).over(S)
    pqb, pqa = qb.shift(1).over(S), qa.shift(1).over(S)
    tot = pl.when(qb + qa != 0.0).then(qb + qa)
    e = pl.when(pb.is_not_null()).then(
        pl.when(bid >= pb).then(qb).otherwise(0.0)
        - pl.when(bid <= pb).then(pqb).otherwise(0.0)
        - pl.when(ask <= pa_).then(qa).otherwise(0.0)
        + pl.when(ask >= pa_).then(pqa).otherwise(0.0))
    n = pl.int_range(pl.len()).over(S)
    d = p - p.first().over(S)
    s1, s2, cnt = d.cum_sum().over(S), (d * d).cum_sum().over(S), (n + 1).cast(pl.Float64)

    def zscore(w: int) -> pl.Expr:
        sd = d.rolling_std(w).over(S)  # on the shifted price, as in the pandas peer
        return pl.when(sd != 0.0).then((p - p.rolling_mean(w).over(S)) / sd)

    ch = p.diff().over(S)

    def wilder(part: pl.Expr) -> pl.Expr:
        x = (pl.when(n > RSI_PERIOD).then(part)
             .when(n == RSI_PERIOD).then(part.rolling_mean(RSI_PERIOD).over(S)))
        return x.ewm_mean(alpha=1.0 / RSI_PERIOD, adjust=False).over(S)

    stage1 = [
        (p / prev).log().alias("log_return"),
        (p / prev - 1.0).alias("return"),
        p.ewm_mean(alpha=0.06, adjust=False).over(S).alias("ewma"),
        p.ewm_mean(span=12, adjust=False).over(S).alias("ema"),
        p.ewm_mean(span=26, adjust=False).over(S).alias("ema_26"),
        p.rolling_mean(20).over(S).alias("sma"),
        p.rolling_mean(50).over(S).alias("sma_50"),
        zscore(100).alias("zscore"),
        zscore(20).alias("zscore_20"),
        p.diff(1).over(S).alias("price_diff1"),
        ((bid + ask) / 2.0).alias("midprice"),
        ((bid + ask) / (bid + ask).shift(1).over(S)).log().alias("mid_log_return"),
        ((bid * qa + ask * qb) / tot).alias("microprice"),
        ((ask - bid) / ((bid + ask) / 2.0) * 10_000.0).alias("quoted_spread"),
        ((qb - qa) / tot).alias("l1_imbalance"),
        e.alias("ofi"),
        wilder(ch.clip(lower_bound=0.0)).alias("_gain"),
        wilder((-ch).clip(lower_bound=0.0)).alias("_loss"),
        (d.rolling_std(20, ddof=0).over(S)).alias("_sd0"),
        (p.first().over(S) + s1 / cnt).alias("mean"),
        pl.when(n >= 1).then((s2 - s1 * s1 / cnt) / (cnt - 1.0)).alias("variance"),
    ]
    ema, ema26 = pl.col("ema"), pl.col("ema_26")
    gain, loss = pl.col("_gain"), pl.col("_loss")
    ar = lr.abs()
    stage2 = [
        lr.shift(1).over(S).alias("log_return_lag1"),
        lr.shift(2).over(S).alias("log_return_lag2"),
        pl.col("ofi").rolling_sum(10).over(S).alias("ofi_10"),
        (lr * lr).rolling_sum(20).over(S).alias("realized_var"),
        (lr * lr).rolling_sum(100).over(S).alias("realized_var_100"),
        (math.pi / 2.0 * (ar * ar.shift(1)).rolling_sum(20)).over(S).alias("bipower_var"),
        (lr * lr).ewm_mean(alpha=0.06, adjust=False).sqrt().over(S).alias("riskmetrics_vol"),
        lr.rolling_std(20).over(S).alias("log_return_std20"),
        lr.rolling_std(100).over(S).alias("log_return_std100"),
        (ema - ema26).alias("macd"),
        (ema - ema26).ewm_mean(span=9, adjust=False).over(S).alias("macd_signal"),
        pl.when(gain + loss == 0.0).then(0.0)
        .otherwise(100.0 * gain / (gain + loss)).alias("rsi"),
        pl.col("sma").alias("bb_mid"),
        (pl.col("sma") + 2.0 * pl.col("_sd0")).alias("bb_upper"),
        (pl.col("sma") - 2.0 * pl.col("_sd0")).alias("bb_lower"),
        pl.rolling_corr(lr, lr.shift(5), window_size=100).over(S)
        .alias("log_return_autocorr5"),
        pl.col("variance").sqrt().alias("stddev"),
        lr.cum_sum().over(S).alias("pnl"),
        (-lr.rolling_quantile(0.05, interpolation="linear", window_size=100)).over(S)
        .alias("var"),
    ]
    lf = (pl.scan_parquet(src).with_columns(stage1).with_columns(stage2)
          .with_columns((pl.col("macd") - pl.col("macd_signal")).alias("macd_hist"))
          .drop("_gain", "_loss", "_sd0"))
    df = lf.collect()
    t_comp = time.perf_counter()
    # CUSUM with reset: no expression form; a Python loop per symbol, as in the pandas peer.
    codes = df.get_column("symbol").cast(pl.Categorical).to_physical().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, bounds)
    stat, alarm = cusum_loop(df.get_column("log_return").fill_null(np.nan).to_numpy(), groups)
    df = df.with_columns(pl.Series("cusum_stat", stat), pl.Series("cusum_alarm", alarm))
    t_cusum = time.perf_counter()
    if writer == "matched":
        codec = MATCHED_WRITER["compression"]
        df.write_parquet(out, compression="uncompressed" if codec == "none" else codec,
                         statistics=False, row_group_size=MATCHED_WRITER["row_group_size"])
    else:
        df.write_parquet(out)
    t1 = time.perf_counter()
    features = [c for c in df.columns if c not in pq.read_schema(src).names]
    return {"rows": df.height, "seconds": t1 - t0, "compute_s": t_comp - t0,
            "cusum_s": t_cusum - t_comp, "write_s": t1 - t_cusum, "features": features}


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


# =========================================================================== checking


def _read_head(path: Path, rows: int, columns: list[str] | None = None) -> pa.Table:
    pf = pq.ParquetFile(path)
    parts, have = [], 0
    for b in pf.iter_batches(batch_size=min(rows, 65_536), columns=columns):
        parts.append(b)
        have += b.num_rows
        if have >= rows:
            break
    return pa.Table.from_batches(parts, schema=parts[0].schema if parts else None).slice(0, rows)


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def compare(outputs: dict[str, Path], input_path: Path, rows: int,
            rtol: float = 1e-6) -> tuple[list[tuple[str, str, str]], bool, list[str]]:
    """Per-column comparison of each engine with the reference (tickflow if present).

    Values: |a - b| <= atol + rtol |b|, where atol is the larger of 1e-9 x the largest |value|
    and rtol x the median non-zero |value| of the same symbol and column: an error is judged
    against the size of the quantity, so a rolling std that should be exactly 0 and comes out
    at 6e-11 (pandas' add/remove rolling variance drifts over millions of rows) or a
    difference of large numbers (macd_hist) is not a mismatch, while a wrong formula is.
    NaN positions must be equal outside each symbol's first WARMUP_PER_SYMBOL rows.
    """
    names = list(outputs)
    ref = names[0]
    tables = {e: _read_head(p, rows) for e, p in outputs.items()}
    src_cols = set(pq.read_schema(input_path).names)
    common = [c for c in tables[ref].column_names if c not in src_cols
              and all(c in t.column_names for t in tables.values())]
    missing = [c for c in tables[ref].column_names if c not in src_cols and c not in common]
    sym = tables[ref].column("symbol").to_numpy(zero_copy_only=False)
    for e, t in tables.items():
        if not np.array_equal(sym, t.column("symbol").to_numpy(zero_copy_only=False)):
            print(f"!! row order differs between {ref} and {e}: symbol columns do not match")
    _, codes = np.unique(sym, return_inverse=True)
    nth = np.zeros(len(codes), dtype=np.int64)
    seen = np.zeros(codes.max() + 1 if len(codes) else 1, dtype=np.int64)
    for i, c in enumerate(codes):  # row number within the symbol (cheap at check sizes)
        nth[i] = seen[c]
        seen[c] += 1
    settled = nth >= WARMUP_PER_SYMBOL
    rows_out: list[tuple[str, str, str]] = []
    all_ok = True
    for col in common:
        a = _as_float(tables[ref].column(col))
        floor = np.zeros(seen.shape[0])
        for c in range(seen.shape[0]):
            mag = np.abs(a[(codes == c) & np.isfinite(a) & (a != 0.0)])
            if mag.size:
                floor[c] = max(1e-9 * mag.max(), rtol * float(np.median(mag)))
        atol = floor[codes]
        verdicts = []
        for e in names[1:]:
            b = _as_float(tables[e].column(col))
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            nan_bad = settled & (nan_a != nan_b)
            both = ~nan_a & ~nan_b
            close = np.abs(a - b) <= atol + rtol * np.abs(b)
            val_bad = both & ~close
            if nan_bad.any() or val_bad.any():
                all_ok = False
                first = int(np.flatnonzero(nan_bad | val_bad)[0])
                rel = np.abs(a - b)[val_bad] / np.maximum(np.abs(b[val_bad]), 1e-300)
                worst = f", max rel {rel.max():.2e}" if val_bad.any() else ""
                verdicts.append(f"MISMATCH vs {e}: {int(val_bad.sum())} values, "
                                f"{int(nan_bad.sum())} NaN positions{worst}; first row {first} "
                                f"({sym[first]}: {ref}={a[first]!r}, {e}={b[first]!r})")
            else:
                n_cmp = int(both.sum())
                verdicts.append(f"OK vs {e} ({n_cmp} values)")
        rows_out.append((col, "OK" if all(v[:2] == "OK" for v in verdicts) else "MISMATCH",
                         "; ".join(verdicts)))
    return rows_out, all_ok, missing


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
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    ap.add_argument("--warm", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0

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
