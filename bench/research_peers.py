"""The research job's core features in pandas and in polars, Parquet to Parquet: the peers
``research_vs_peers.py`` and ``research_whole_process.py`` time tickflow against.

Both compute every core column of ``jobs/features/core.yaml`` except ``cvar`` (no vectorised
rolling tail mean); ``cusum_stat``/``cusum_alarm`` (reset after an alarm is path dependent)
use a plain Python loop per symbol in both: neither library has a vectorised form.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
