"""The peers ``bench/kernels.py`` times beside the kernels: the same statistic in pandas
(grouped by key), polars (``.over("key")``) and TA-Lib (one key), and the timing helpers."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def pandas_peers() -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
    """Same statistic in pandas over all rows, grouped by key (arrival order kept)."""

    def g(df: Any, col: str) -> Any:
        return df.groupby("key", sort=False)[col]

    def rolling(df: Any, col: str, w: int) -> Any:
        return g(df, col).rolling(w)

    def ewm(df: Any, col: str, **kw: Any) -> Any:
        return g(df, col).ewm(adjust=False, **kw).mean()

    def autocorr(df: Any, p: dict[str, Any]) -> Any:
        lag, w = p.get("lag", 5), p.get("window", 100)
        parts = []
        for _, s in df.groupby("key", sort=False)["log_return"]:
            s = s.dropna()
            parts.append(s.rolling(w).corr(s.shift(lag)))
        return parts

    def ofi(df: Any, p: dict[str, Any]) -> Any:
        gb = df.groupby("key", sort=False)
        pb, pa_ = gb["best_bid"].shift(1), gb["best_ask"].shift(1)
        pqb, pqa = gb["best_bid_size"].shift(1), gb["best_ask_size"].shift(1)
        b, a, qb, qa = df.best_bid, df.best_ask, df.best_bid_size, df.best_ask_size
        e = ((b >= pb) * qb - (b <= pb) * pqb - (a <= pa_) * qa + (a >= pa_) * pqa)
        w = p.get("window", 1)
        if w == 1:
            return e
        return e.groupby(df.key, sort=False).rolling(w).sum()

    def macd(df: Any, p: dict[str, Any]) -> Any:
        line = (ewm(df, "price", span=p.get("fast", 12))
                - ewm(df, "price", span=p.get("slow", 26)))
        sig = line.groupby(level=0, sort=False).ewm(span=p.get("signal", 9), adjust=False).mean()
        return line, sig

    def rsi(df: Any, p: dict[str, Any]) -> Any:
        n = p.get("period", 14)
        d = g(df, "price").diff()
        gain, loss = d.clip(lower=0), (-d).clip(lower=0)
        ag = gain.groupby(df.key, sort=False).ewm(alpha=1 / n, adjust=False).mean()
        al = loss.groupby(df.key, sort=False).ewm(alpha=1 / n, adjust=False).mean()
        return 100 * ag / (ag + al)

    def bb(df: Any, p: dict[str, Any]) -> Any:
        w = p.get("window", 20)
        return rolling(df, "price", w).mean(), rolling(df, "price", w).std(ddof=0)

    def zscore(df: Any, p: dict[str, Any]) -> Any:
        w = p.get("window", 100)
        m, s = rolling(df, "price", w).mean(), rolling(df, "price", w).std()
        return m, s

    def welford(df: Any, p: dict[str, Any]) -> Any:
        e = g(df, "price").expanding()
        return e.mean(), e.var()

    return {
        "log_returns": lambda df, p: np.log(df.price / g(df, "price").shift(1)),
        "simple_returns": lambda df, p: g(df, "price").pct_change(),
        "lag": lambda df, p: g(df, "log_return").shift(p.get("k", 1)),
        "diff": lambda df, p: g(df, "price").diff(p.get("k", 1)),
        "pnl": lambda df, p: g(df, "log_return").cumsum(),
        "midprice": lambda df, p: (df.best_bid + df.best_ask) * 0.5,
        "microprice": lambda df, p: ((df.best_bid * df.best_ask_size
                                      + df.best_ask * df.best_bid_size)
                                     / (df.best_bid_size + df.best_ask_size)),
        "quoted_spread": lambda df, p: ((df.best_ask - df.best_bid)
                                        / ((df.best_ask + df.best_bid) * 0.5) * 1e4),
        "l1_imbalance": lambda df, p: ((df.best_bid_size - df.best_ask_size)
                                       / (df.best_bid_size + df.best_ask_size)),
        "ewma": lambda df, p: ewm(df, "price", alpha=p.get("alpha", 0.06)),
        "ema": lambda df, p: ewm(df, "price", span=p.get("span", 12)),
        "riskmetrics_vol": lambda df, p: np.sqrt(
            (df.log_return ** 2).groupby(df.key, sort=False)
            .ewm(alpha=1 - p.get("lambda", 0.94), adjust=False).mean()),
        "welford_mean_var": welford,
        "sma": lambda df, p: rolling(df, "price", p.get("window", 20)).mean(),
        "rolling_zscore": zscore,
        "rolling_std": lambda df, p: rolling(df, "log_return", p.get("window", 20)).std(),
        "realized_var": lambda df, p: (df.log_return ** 2).groupby(df.key, sort=False)
        .rolling(p.get("window", 20)).sum(),
        "bipower_var": lambda df, p: (df.log_return.abs()
                                      * g(df, "log_return").shift(1).abs())
        .groupby(df.key, sort=False).rolling(p.get("window", 20)).sum() * (math.pi / 2),
        "autocorr": autocorr,
        "historical_var": lambda df, p: -rolling(df, "log_return", p.get("window", 100))
        .quantile(p.get("alpha", 0.05)),
        "ofi": ofi,
        "macd": macd,
        "rsi": rsi,
        "bollinger_bands": bb,
    }


def polars_peers() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """polars expressions, windowed by ``.over("key")``."""
    import polars as pl

    c = pl.col
    o = "key"

    def ofi(p: dict[str, Any]) -> Any:
        b, a, qb, qa = c("best_bid"), c("best_ask"), c("best_bid_size"), c("best_ask_size")
        pb, pa_, pqb, pqa = (b.shift(1), a.shift(1), qb.shift(1), qa.shift(1))
        e = ((b >= pb).cast(pl.Float64) * qb - (b <= pb).cast(pl.Float64) * pqb
             - (a <= pa_).cast(pl.Float64) * qa + (a >= pa_).cast(pl.Float64) * pqa)
        w = p.get("window", 1)
        return [(e if w == 1 else e.rolling_sum(w)).over(o)]

    def macd(p: dict[str, Any]) -> Any:
        line = (c("price").ewm_mean(span=p.get("fast", 12), adjust=False)
                - c("price").ewm_mean(span=p.get("slow", 26), adjust=False))
        return [line.over(o), line.ewm_mean(span=p.get("signal", 9), adjust=False).over(o)]

    def rsi(p: dict[str, Any]) -> Any:
        n = p.get("period", 14)
        d = c("price").diff()
        ag = d.clip(lower_bound=0).ewm_mean(alpha=1 / n, adjust=False)
        al = (-d).clip(lower_bound=0).ewm_mean(alpha=1 / n, adjust=False)
        return [(100 * ag / (ag + al)).over(o)]

    def bb(p: dict[str, Any]) -> Any:
        w = p.get("window", 20)
        m = c("price").rolling_mean(w)
        s = c("price").rolling_std(w, ddof=0)
        return [m.over(o), (m + 2 * s).over(o), (m - 2 * s).over(o)]

    def zscore(p: dict[str, Any]) -> Any:
        w = p.get("window", 100)
        x = c("price")
        return [((x - x.rolling_mean(w)) / x.rolling_std(w)).over(o)]

    def welford(p: dict[str, Any]) -> Any:
        x = c("price")
        n = x.cum_count()
        mean = x.cum_sum() / n
        var = ((x * x).cum_sum() - n * mean * mean) / (n - 1)
        return [mean.over(o), var.over(o), var.sqrt().over(o)]

    r = c("log_return")
    return {
        "log_returns": lambda p: [(c("price") / c("price").shift(1)).log().over(o)],
        "simple_returns": lambda p: [c("price").pct_change().over(o)],
        "lag": lambda p: [r.shift(p.get("k", 1)).over(o)],
        "diff": lambda p: [c("price").diff(p.get("k", 1)).over(o)],
        "pnl": lambda p: [r.cum_sum().over(o)],
        "midprice": lambda p: [(c("best_bid") + c("best_ask")) * 0.5],
        "microprice": lambda p: [(c("best_bid") * c("best_ask_size")
                                  + c("best_ask") * c("best_bid_size"))
                                 / (c("best_bid_size") + c("best_ask_size"))],
        "quoted_spread": lambda p: [(c("best_ask") - c("best_bid"))
                                    / ((c("best_ask") + c("best_bid")) * 0.5) * 1e4],
        "l1_imbalance": lambda p: [(c("best_bid_size") - c("best_ask_size"))
                                   / (c("best_bid_size") + c("best_ask_size"))],
        "ewma": lambda p: [c("price").ewm_mean(alpha=p.get("alpha", 0.06), adjust=False).over(o)],
        "ema": lambda p: [c("price").ewm_mean(span=p.get("span", 12), adjust=False).over(o)],
        "riskmetrics_vol": lambda p: [(r * r).ewm_mean(alpha=1 - p.get("lambda", 0.94),
                                                       adjust=False).sqrt().over(o)],
        "welford_mean_var": welford,
        "sma": lambda p: [c("price").rolling_mean(p.get("window", 20)).over(o)],
        "rolling_zscore": zscore,
        "rolling_std": lambda p: [r.rolling_std(p.get("window", 20)).over(o)],
        "realized_var": lambda p: [(r * r).rolling_sum(p.get("window", 20)).over(o)],
        "bipower_var": lambda p: [((r.abs() * r.shift(1).abs()).rolling_sum(
            p.get("window", 20)) * (math.pi / 2)).over(o)],
        "autocorr": lambda p: [pl.rolling_corr(r, r.shift(p.get("lag", 5)),
                                               window_size=p.get("window", 100)).over(o)],
        "historical_var": lambda p: [(-r.rolling_quantile(
            p.get("alpha", 0.05), interpolation="linear",
            window_size=p.get("window", 100))).over(o)],
        "ofi": ofi,
        "macd": macd,
        "rsi": rsi,
        "bollinger_bands": bb,
    }


def talib_peers() -> dict[str, Callable[[dict[str, np.ndarray], dict[str, Any]], Any]]:
    """TA-Lib batch functions on the rows of one key."""
    import talib

    return {
        "simple_returns": lambda d, p: talib.ROCP(d["price"], 1),
        "midprice": lambda d, p: talib.MEDPRICE(d["best_ask"], d["best_bid"]),
        "ema": lambda d, p: talib.EMA(d["price"], p.get("span", 12)),
        "ewma": lambda d, p: talib.EMA(d["price"], round(2 / p.get("alpha", 0.06) - 1)),
        "sma": lambda d, p: talib.SMA(d["price"], p.get("window", 20)),
        "rolling_std": lambda d, p: talib.STDDEV(d["log_return"], p.get("window", 20), 1.0),
        "rolling_zscore": lambda d, p: (talib.SMA(d["price"], p.get("window", 100)),
                                        talib.STDDEV(d["price"], p.get("window", 100), 1.0)),
        "macd": lambda d, p: talib.MACD(d["price"], p.get("fast", 12), p.get("slow", 26),
                                        p.get("signal", 9)),
        "rsi": lambda d, p: talib.RSI(d["price"], p.get("period", 14)),
        "bollinger_bands": lambda d, p: talib.BBANDS(d["price"], p.get("window", 20),
                                                     p.get("k", 2.0), p.get("k", 2.0)),
        "autocorr": lambda d, p: talib.CORREL(d["log_return"][p.get("lag", 5):],
                                              d["log_return"][:-p.get("lag", 5)],
                                              p.get("window", 100)),
        "realized_var": lambda d, p: talib.SUM(d["log_return"] ** 2, p.get("window", 20)),
        "pnl": None,  # no cumulative sum in TA-Lib
    }


def timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peer_time(peer: str, label: str, rows: int, fn: Callable[[], Any],
              repeat: int = 1) -> float | None:
    try:
        return timed(fn, repeat) / rows * 1e9
    except Exception as exc:  # a peer API change must not stop the run
        print(f"  {label}: {peer} failed: {type(exc).__name__}: {exc}")
        return None
