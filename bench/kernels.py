"""Per-kernel throughput: each registered kernel, one thread, against pandas, polars, TA-Lib.

Usage::

    .venv/bin/python bench/kernels.py                                   # 10M rows, all peers
    .venv/bin/python bench/kernels.py --rows 1000000 --peers none       # quick, kernels only
    .venv/bin/python bench/kernels.py --rows 1000000 --only sma,autocorr --peers all
    .venv/bin/python bench/kernels.py --rows 1000000 --time-window 5s   # + time-window variants

Data: the simulator's ticks (``tickflow.connectors.simulator``, seed 7): 14 interleaved symbols with
activity weights, correlated random-walk prices rounded to each symbol's tick size, lognormal
sizes > 0, bid < ask, and per-symbol log returns. Inputs outside the canonical set (``x``,
``y``, ``high``, ``funding_rate``, ...) get synthetic columns by name. The data is made in
``kernel_data.py``, the peers' versions of each statistic are in ``kernel_peers.py``.

Each kernel is bound with the parameters of its first step in ``jobs/features/core.yaml`` (its
defaults otherwise, plus ``PARAM_OVERRIDES`` for required parameters: vpin's bucket volume,
the Hayashi-Yoshida pair = the data's first two symbols), warmed up on a small slice (JIT
compile or cache load, not timed), then run once over all rows in morsels of 65,536 rows with
fresh state, single-threaded; the table shows ns/row and rows/s. Beside it, where the same
statistic exists: pandas (``groupby(key)`` rolling/ewm/shift on all rows), polars
(``.over("key")`` on all rows; polars uses its own thread pool) and, on ONE key, TA-Lib (one
batch call on the rows of key 0) next to the kernel run on the same rows (keyed state and
morsels as above), in ns per row of that key, with their ratio (target <= 3x). Each kernel
belongs to one of the seed's throughput classes (``KERNEL_CLASS``: simple transforms 5M ops/s,
online stats 2M, indicators 1M, rolling windows 500K); the ``>=10x`` column says whether the
kernel runs at >= 10 times its class figure. A kernel missing from ``KERNEL_CLASS`` is listed
as unclassed and held to the simple-transform figure.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.kernel_data import MORSEL, SYMBOLS, make_data, synthetic  # noqa: E402
from bench.kernel_peers import pandas_peers, peer_time, polars_peers, talib_peers  # noqa: E402

WARMUP_ROWS = 5_000
CORE_YAML = ROOT / "jobs" / "features" / "core.yaml"

CLASS_FIGURES = {  # the seed's claimed throughput per class, ops (rows) per second
    "simple": 5_000_000,
    "online": 2_000_000,
    "indicator": 1_000_000,
    "rolling": 500_000,
}
CLASS_LABEL = {"simple": "simple transform", "online": "online stat",
               "indicator": "indicator", "rolling": "rolling window"}

KERNEL_CLASS = {
    # simple transforms: one row in, one row out, at most the previous row of the key
    "log_returns": "simple", "simple_returns": "simple", "lag": "simple", "diff": "simple",
    "pnl": "simple", "midprice": "simple", "microprice": "simple", "quoted_spread": "simple",
    "l1_imbalance": "simple", "funding_apr": "simple", "basis_annualized": "simple",
    "cash_and_carry_edge": "simple", "forward_points": "simple", "cip_basis": "simple",
    "carry_signal": "simple", "pairs_spread": "simple", "perp_fair_price": "simple",
    "open_interest_delta": "simple", "implementation_shortfall": "simple",
    "arrival_price_impact": "simple", "triangular_arbitrage": "simple",
    "funding_cost": "simple", "effective_spread": "simple", "corwin_schultz_spread": "simple",
    "signed_volume": "simple", "price_band_guard": "simple", "fat_finger_guard": "simple",
    "stale_quote_detector": "simple", "quote_time": "simple", "cross_venue_spread": "simple",
    # online statistics: O(1) recursive state per key
    "ewma": "online", "ema": "online", "riskmetrics_vol": "online", "welford_mean_var": "online",
    "cusum": "online", "kalman_hedge_ratio": "online", "kalman_1d": "online", "ewcov": "online",
    "drawdown": "online", "throttle_check": "online",
    # indicators: technical-analysis indicators, several outputs or chained recursions
    "macd": "indicator", "rsi": "indicator", "bollinger_bands": "indicator", "ofi": "indicator",
    "stochastic_osc": "indicator", "donchian_channel": "indicator", "vwap": "indicator",
    "vpin": "indicator",
    # rolling windows: a window of rows (or of time) per key
    "sma": "rolling", "rolling_zscore": "rolling", "rolling_std": "rolling",
    "realized_var": "rolling", "bipower_var": "rolling", "autocorr": "rolling",
    "historical_var": "rolling", "historical_cvar": "rolling", "rolling_min": "rolling",
    "rolling_max": "rolling", "rolling_skew": "rolling", "rolling_kurt": "rolling",
    "rolling_corr": "rolling", "rolling_beta": "rolling", "cornish_fisher_var": "rolling",
    "medrv": "rolling", "outlier_flag_mad": "rolling", "amihud_illiquidity": "rolling",
    "kyle_lambda": "rolling", "roll_spread": "rolling", "xcorr_leadlag": "rolling",
    "hayashi_yoshida_cov": "rolling", "hayashi_yoshida_corr": "rolling",
    "circuit_breaker": "rolling",
}

# Parameters for kernels whose params model has required fields and that are not in core.yaml.
# The indicators TA-Lib has that the issue holds within 3x of TA-Lib on one key (EMA, SMA, RSI,
# MACD, BBANDS, STDDEV); other TA-Lib rows are shown for information.
TALIB_TARGET = {"ema", "ewma", "sma", "rsi", "macd", "bollinger_bands", "rolling_std"}

# Cross-key kernels name two symbols: "{sym0}" / "{sym1}" are filled with the first two keys.
PARAM_OVERRIDES: dict[str, dict[str, Any]] = {
    "pairs_spread": {"beta": 1.0},
    "vpin": {"bucket_volume": 1000.0},  # ~12 units per trade: a bucket every ~80 trades
    "hayashi_yoshida_cov": {"a": "{sym0}", "b": "{sym1}", "window": "60s"},
    "hayashi_yoshida_corr": {"a": "{sym0}", "b": "{sym1}", "window": "60s"},
}


# =========================================================================== binding


def core_params() -> dict[str, tuple[dict[str, Any], str | None]]:
    """First core.yaml step of each kernel: (params, input)."""
    import yaml

    out: dict[str, tuple[dict[str, Any], str | None]] = {}
    for step in yaml.safe_load(CORE_YAML.read_text()).get("steps", []):
        name = step.get("kernel")
        if name and name not in out:
            out[name] = (dict(step.get("params") or {}), step.get("input"))
    return out


def bind(name: str, params: dict[str, Any], inp: str | None) -> Any:
    from tickflow.engine.registry import KERNELS
    from tickflow.engine.testing import _bind

    d = KERNELS.get(name)
    inputs = None
    if inp is not None and len(d.inputs) >= 1:
        inputs = (inp, *d.inputs[1:])
    return _bind(name, params, inputs)


CLOCK: Callable[[], float] = time.perf_counter


def run_morsels(bound: Any, key: np.ndarray, ts: np.ndarray, cols: list[np.ndarray],
                stop: int | None = None) -> float:
    n = key.shape[0] if stop is None else stop
    state = bound.new_state()
    key_ids = key_ids_of(bound)
    gc.collect()
    t0 = CLOCK()
    for a in range(0, n, MORSEL):
        b = min(a + MORSEL, n)
        bound.run(key[a:b], ts[a:b], [c[a:b] for c in cols], state, key_ids)
    return CLOCK() - t0


def key_ids_of(bound: Any) -> tuple[int, ...]:
    """Dense ids of the symbols a cross-key kernel names (empty for per-key kernels)."""
    if not bound.is_cross_key:
        return ()
    return tuple(SYMBOLS.index(v) if v in SYMBOLS else -1 for v in bound.key_values)


def fill_symbols(params: dict[str, Any]) -> dict[str, Any]:
    """Replace the "{sym0}"/"{sym1}" placeholders of PARAM_OVERRIDES by the data's symbols."""
    subs = {f"{{sym{j}}}": s for j, s in enumerate(SYMBOLS[:2])}
    return {k: subs.get(v, v) if isinstance(v, str) else v for k, v in params.items()}


# =========================================================================== main


def fmt_ns(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.1f}M"
    return f"{x / 1e3:,.0f}K"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--peers", choices=("none", "pandas", "polars", "talib", "all"),
                    default="all", help="which peers to time beside the kernels")
    ap.add_argument("--only", default="", help="comma-separated kernel names")
    ap.add_argument("--time-window", default="", metavar="SPAN",
                    help="also time every time-window kernel with this window (e.g. 5s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1,
                    help="kernel runs per kernel (best of), default 1")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time kernels by wall clock (default) or by this thread's CPU time "
                         "(steadier on a shared machine)")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="compile into an empty NUMBA_CACHE_DIR: numba's cache=True does not "
                         "notice when a helper in another file changed, so a stale cache can "
                         "time old code")
    args = ap.parse_args(argv)
    if args.fresh_cache:
        import os
        import tempfile

        if "numba" in sys.modules:
            ap.error("--fresh-cache must be set before numba is imported")
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="tickflow-bench-numba-")
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.thread_time

    import tickflow.kernels  # noqa: F401  (registers the built-ins)
    from tickflow.engine.registry import KERNELS

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in KERNELS]
    if unknown:
        ap.error(f"unknown kernel(s): {', '.join(unknown)}")
    names = only or KERNELS.names()

    t0 = time.perf_counter()
    data = make_data(args.rows, args.seed)
    n = data["key"].shape[0]
    n_keys = int(data["key"].max()) + 1
    print(f"data: {n:,} rows, {n_keys} keys, simulator seed {args.seed} "
          f"({time.perf_counter() - t0:.1f} s); morsels of {MORSEL:,} rows, one thread, "
          f"{args.clock} clock, best of {max(args.repeat, 1)}")

    core = core_params()
    want = {"none": set(), "pandas": {"pandas"}, "polars": {"polars"}, "talib": {"talib"},
            "all": {"pandas", "polars", "talib"}}[args.peers]
    pdf = pl_df = None
    one_key: dict[str, np.ndarray] = {}
    if "pandas" in want:
        import pandas as pd

        pdf = pd.DataFrame({k: v for k, v in data.items() if k != "ts"})
        pd_fns = pandas_peers()
    if "polars" in want:
        import polars as pl

        pl_df = pl.DataFrame({k: v for k, v in data.items() if k != "ts"})
        pl_fns = polars_peers()
        print(f"polars {pl.__version__} with {pl.thread_pool_size()} threads")
    if "talib" in want:
        mask = data["key"] == 0
        one_key = {k: np.ascontiguousarray(v[mask]) for k, v in data.items()
                   if v.dtype == np.float64}
        one_key["ts"] = np.ascontiguousarray(data["ts"][mask])
        tl_fns = {k: v for k, v in talib_peers().items() if v is not None}

    jobs: list[tuple[str, str, dict[str, Any], str | None]] = []
    for name in names:
        params, inp = core.get(name, ({}, None))
        params = fill_symbols({**PARAM_OVERRIDES.get(name, {}), **params})
        jobs.append((name, name, params, inp))
        if args.time_window and KERNELS.get(name).time_window:
            jobs.append((f"{name}[{args.time_window}]", name,
                         {**params, "window": args.time_window}, inp))

    rows_out = []
    for label, name, params, inp in jobs:
        try:
            bound = bind(name, params, inp)
        except Exception as exc:
            print(f"  {label}: cannot bind ({exc})")
            continue
        cols = [np.ascontiguousarray(data[c] if c in data else synthetic(c, data),
                                     dtype=np.float64) for c in bound.input_columns]
        key, ts = data["key"], data["ts"]
        run_morsels(bound, key, ts, cols, stop=min(WARMUP_ROWS, n))  # JIT / cache load
        secs = min(run_morsels(bound, key, ts, cols) for _ in range(max(args.repeat, 1)))
        ns = secs / n * 1e9
        rate = n / secs
        cls = KERNEL_CLASS.get(name, "unclassed")
        figure = CLASS_FIGURES.get(cls, CLASS_FIGURES["simple"])  # unclassed: strictest
        peers: dict[str, float | None] = {"pandas": None, "polars": None, "talib": None,
                                          "one_key": None}
        is_tw = label != name
        if not is_tw:
            if pdf is not None and name in pd_fns:
                fn_pd, df_pd = pd_fns[name], pdf
                peers["pandas"] = peer_time("pandas", label, n,
                                            lambda f=fn_pd, d=df_pd, p=params: f(d, p))
            if pl_df is not None and name in pl_fns:
                exprs = [e.alias(f"_{j}") for j, e in enumerate(pl_fns[name](params))]
                peers["polars"] = peer_time("polars", label, n,
                                            lambda d=pl_df, e=exprs: d.select(e))
            if one_key and name in tl_fns:
                m = one_key["price"].shape[0]
                peers["talib"] = peer_time("talib", label, m,
                                           lambda f=tl_fns[name], p=params: f(one_key, p), 3)
                # the kernel on the same single key, keyed state and morsels as above
                k1 = np.zeros(m, dtype=np.int64)
                c1 = [np.ascontiguousarray(c[mask]) for c in cols]
                peers["one_key"] = min(run_morsels(bound, k1, one_key["ts"], c1)
                                       for _ in range(3)) / m * 1e9
        rows_out.append((label, CLASS_LABEL.get(cls, cls), ns, rate, figure, peers))
        print(f"  {label:<28} {fmt_ns(ns):>8} ns/row", flush=True)

    print()
    head = (f"{'kernel':<28} {'class':<16} {'ns/row':>8} {'rows/s':>8} {'class':>6} "
            f"{'x class':>8} {'>=10x':>5}  {'pandas':>8} {'polars':>8} {'1 key*':>8} "
            f"{'talib*':>8} {'/talib':>6}")
    print(head)
    print(f"{'':<28} {'':<16} {'':>8} {'':>8} {'figure':>6} {'':>8} {'':>5}  "
          f"{'ns/row':>8} {'ns/row':>8} {'ns/row':>8} {'ns/row':>8} {'':>6}")
    print("-" * len(head))
    for label, cls, ns, rate, figure, peers in rows_out:
        one, tl = peers["one_key"], peers["talib"]
        ratio = f"{one / tl:.1f}x" if one is not None and tl else "-"
        print(f"{label:<28} {cls:<16} {fmt_ns(ns):>8} {fmt_rate(rate):>8} "
              f"{fmt_rate(figure):>6} {rate / figure:>7.1f}x "
              f"{'yes' if rate >= 10 * figure else 'NO':>5}  "
              f"{fmt_ns(peers['pandas']):>8} {fmt_ns(peers['polars']):>8} "
              f"{fmt_ns(one):>8} {fmt_ns(tl):>8} {ratio:>6}")
    print()
    print("class figures (the seed's claims): simple transforms 5M ops/s, online stats 2M, "
          "indicators 1M, rolling windows 500K; '>=10x' = kernel rows/s >= 10 x its class figure.")
    print("kernels: single thread, morsels of 65,536 rows, fresh state, JIT warmed up. pandas and "
          "polars: all rows, grouped by key (polars multi-threaded). *One key: the kernel "
          "(keyed state, morsels) and TA-Lib (one batch call) on the rows of key 0 only, ns "
          "per row of that key; '/talib' = kernel / TA-Lib (target <= 3x).")
    slow = [r[0] for r in rows_out if r[3] < 10 * r[4]]
    print(f"below 10x class figure: {', '.join(slow) if slow else 'none'}")
    far = [r[0] for r in rows_out if r[5]["one_key"] is not None and r[5]["talib"]
           and r[5]["one_key"] > 3 * r[5]["talib"]]
    if any(r[5]["talib"] for r in rows_out):
        held = [f for f in far if f in TALIB_TARGET]
        print(f"more than 3x TA-Lib on one key, of the issue's indicators "
              f"({', '.join(sorted(TALIB_TARGET))}): {', '.join(held) if held else 'none'}")
        other = [f for f in far if f not in TALIB_TARGET]
        if other:
            print(f"more than 3x TA-Lib on one key, other kernels (no target): "
                  f"{', '.join(other)}")
    unclassed = [r[0] for r in rows_out if r[1] == "unclassed"]
    if unclassed:
        print(f"unclassed (add to KERNEL_CLASS; timed against the simple figure): "
              f"{', '.join(unclassed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
