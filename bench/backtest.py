"""The backtest simulator against vectorbt's ``Portfolio.from_signals`` on the same signals.

One generated tick file; features (z-score, RSI) computed once by the engine; the mean
reversion rules of ``jobs/backtest.yaml`` turned into signals; then, side by side in one run:

- tickflow: signals -> next-tick bid/ask fills with fees -> equity (``run_simulation``), per
  symbol (``mode: per_symbol``, fixed notional, no stops: the setting vectorbt can express);
- vectorbt: the same signals pivoted to one column per symbol (each symbol's own ticks),
  shifted by one tick (next-tick execution), executed at the mid with a per-tick slippage of
  half the spread (so buys pay the ask and sells get the bid), same fees, then ``pf.value()``;
- a sweep of ``--points`` parameter points (entry z-score x entry RSI) on ``--sweep-rows``
  ticks: tickflow's ``run_sweep`` on a process pool (both cores) and on one process, and
  vectorbt in a loop (one process).

The issue's target: tickflow within 2x of vectorbt's speed for a single run.

Usage::

    .venv/bin/python bench/backtest.py                         # 10M ticks, 14 symbols
    .venv/bin/python bench/backtest.py --rows 2000000 --points 20
    .venv/bin/python bench/backtest.py --skip-vectorbt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

JOB = str(ROOT / "jobs" / "backtest.yaml")
# the setting both engines can express: per symbol, fixed notional, market orders, no stops
BASE_SETS = ["strategy.execution.stop_loss=null", "strategy.execution.max_holding=null",
             "strategy.execution.latency_ms=0", "strategy.sizing.method=fixed_notional",
             "strategy.sizing.notional=1000", "strategy.portfolio.mode=per_symbol",
             "strategy.portfolio.max_positions=null", "strategy.execution.fees.taker_bps=5"]
FEE = 5e-4


def best_of(repeat: int, fn: Any) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def ticks_file(rows: int, symbols: int, path: str | None) -> str:
    from tickflow.connectors.simulator import write_simulated_parquet

    target = Path(path or f"/tmp/tickflow_bench/ticks_{rows}_{symbols}.parquet")
    if not target.exists():
        start = time.perf_counter()
        write_simulated_parquet(target, rows=rows, symbols=symbols, seed=7)
        print(f"generated {rows:,} ticks of {symbols} symbols in "
              f"{time.perf_counter() - start:.1f} s -> {target}")
    return str(target)


def load(ticks: str, workers: int) -> tuple[Any, Any, Any, float]:
    from tickflow.engine.backtest.plan import build_plan
    from tickflow.engine.backtest.run import load_backtest_job, load_market_data

    os.environ["TICKS"] = ticks
    job = load_backtest_job(JOB, BASE_SETS)
    plan = build_plan(job.spec.strategy)
    start = time.perf_counter()
    data = load_market_data(job, plan, workers=workers)
    return job, plan, data, time.perf_counter() - start


def bench_tickflow(job: Any, plan: Any, data: Any, repeat: int) -> dict[str, Any]:
    from tickflow.engine.backtest.fills import run_simulation
    from tickflow.engine.backtest.metrics import result_metrics

    cols, strategy = data.columns, job.spec.strategy
    t_sig, code = best_of(repeat, lambda: plan.signal_codes(cols, data.sym))

    def sim() -> Any:
        return run_simulation(data.ts, data.sym, len(data.symbols), cols["price"],
                              cols["best_bid"], cols["best_ask"], code, None, strategy)

    sim()  # numba: load or compile outside the timing
    t_sim, result = best_of(repeat, sim)
    t_met, _ = best_of(repeat, lambda: [result_metrics(result, i)
                                        for i in range(len(data.symbols))])
    return {"signals_s": t_sig, "sim_s": t_sim, "metrics_s": t_met, "code": code,
            "result": result}


def pivot(data: Any, code: np.ndarray) -> dict[str, np.ndarray]:
    """Per-symbol columns of each symbol's own ticks, padded; signals moved one tick later."""
    from tickflow.engine.backtest.plan import ENTRY_LONG, EXIT_LONG

    n_sym = len(data.symbols)
    counts = np.bincount(data.sym, minlength=n_sym)
    length = int(counts.max()) + 1
    order = np.argsort(data.sym, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - np.repeat(starts, counts)   # row within its symbol
    sym_sorted = data.sym[order]
    cols = data.columns
    bid, ask = cols["best_bid"][order], cols["best_ask"][order]
    mid = 0.5 * (bid + ask)
    out = {"close": np.full((length, n_sym), np.nan),
           "slippage": np.zeros((length, n_sym)),
           "entries": np.zeros((length, n_sym), dtype=bool),
           "exits": np.zeros((length, n_sym), dtype=bool)}
    out["close"][pos, sym_sorted] = mid
    out["slippage"][pos, sym_sorted] = (ask - bid) / 2 / mid
    c = code[order]
    # the signal of a symbol's tick j executes on its tick j + 1 (at that tick's quotes)
    out["entries"][pos + 1, sym_sorted] = (c & ENTRY_LONG) != 0
    out["exits"][pos + 1, sym_sorted] = (c & EXIT_LONG) != 0
    return out


def bench_vectorbt(data: Any, code: np.ndarray, repeat: int) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    import pandas as pd
    import vectorbt as vbt

    t_pivot, arrays = best_of(1, lambda: pivot(data, code))
    frames = {k: pd.DataFrame(v, columns=data.symbols) for k, v in arrays.items()}

    def run() -> Any:
        pf = vbt.Portfolio.from_signals(
            frames["close"], frames["entries"], frames["exits"], price=frames["close"],
            slippage=frames["slippage"], fees=FEE, size=1000.0, size_type="value",
            init_cash=1e12, accumulate=False)
        pf.value()
        return pf

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    t_run, pf = best_of(repeat, run)
    return {"pivot_s": t_pivot, "run_s": t_run, "first_s": first, "pf": pf,
            "version": vbt.__version__}


def agreement(result: Any, pf: Any, symbols: list[str]) -> str:
    """Closed trades of both engines: count and summed P&L."""
    from tickflow.engine.backtest.sim_layout import R_END

    t = result.trades
    ours = t["reason"] != R_END
    rec = pf.trades.records_readable
    closed = rec[rec["Status"] == "Closed"]
    pnl_ours, pnl_theirs = float(t["pnl"][ours].sum()), float(closed["PnL"].sum())
    rel = abs(pnl_ours - pnl_theirs) / max(abs(pnl_theirs), 1e-12)
    return (f"agreement: closed trades tickflow {int(ours.sum()):,}, vectorbt {len(closed):,}; "
            f"their summed P&L {pnl_ours:,.2f} vs {pnl_theirs:,.2f} (relative difference "
            f"{rel:.1e})")


def sweep_points(points: int) -> dict[str, list[float]]:
    side = max(1, round(points ** 0.5))
    other = max(1, points // side)
    return {"entry_z": [round(1.0 + 2.0 * i / max(1, side - 1), 4) for i in range(side)],
            "entry_rsi": [round(20.0 + 20.0 * i / max(1, other - 1), 4) for i in range(other)]}


def bench_sweeps(ticks: str, points: int, skip_vectorbt: bool, repeat_single: bool
                 ) -> list[tuple[str, float, int]]:
    from tickflow.engine.backtest.spec import SweepSpec
    from tickflow.engine.backtest.sweep_run import run_sweep

    os.environ["TICKS"] = ticks
    grid = sweep_points(points)
    sweep = SweepSpec.model_validate({"parameters": grid, "metric": "sharpe"})
    n = len(grid["entry_z"]) * len(grid["entry_rsi"])
    out = []
    runs = [(2, "threads"), (2, "processes")] + ([(1, "threads")] if repeat_single else [])
    for workers, pool in runs:
        from tickflow.engine.backtest import run as bt_run

        bt_run._FEATURE_CACHE.clear()  # each run pays for its features
        start = time.perf_counter()
        rows = run_sweep(JOB, sweep, BASE_SETS, None, workers, pool)
        label = f"{workers} {pool}" if workers > 1 else "1 thread (sequential)"
        out.append((f"tickflow sweep, {label}", time.perf_counter() - start, len(rows)))
    if not skip_vectorbt:
        job, _, data, t_features = load(ticks, 2)
        start = time.perf_counter()
        warnings.filterwarnings("ignore")
        import pandas as pd
        import vectorbt as vbt

        from tickflow.engine.backtest.plan import build_plan

        for z in grid["entry_z"]:
            for r in grid["entry_rsi"]:
                s = job.spec.strategy.model_copy(update={"params": {
                    **job.spec.strategy.params, "entry_z": z, "entry_rsi": r}})
                code = build_plan(s).signal_codes(data.columns, data.sym)
                arrays = pivot(data, code)
                frames = {k: pd.DataFrame(v) for k, v in arrays.items()}
                pf = vbt.Portfolio.from_signals(
                    frames["close"], frames["entries"], frames["exits"],
                    price=frames["close"], slippage=frames["slippage"], fees=FEE, size=1000.0,
                    size_type="value", init_cash=1e12)
                pf.total_return()
        out.append(("vectorbt loop (+ features once, "
                    f"{t_features:.1f} s), 1 process", time.perf_counter() - start + t_features,
                    n))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--symbols", type=int, default=14)
    p.add_argument("--ticks", default=None, help="tick Parquet (default: generated in /tmp)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--sweep-rows", type=int, default=2_000_000)
    p.add_argument("--skip-vectorbt", action="store_true")
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-vectorbt-sweep", action="store_true",
                   help="no vectorbt loop in the sweep (about 2.5 s a point at 2M ticks)")
    p.add_argument("--single-process-sweep", action="store_true",
                   help="also time the sweep on one process (scaling figure)")
    args = p.parse_args()

    import multiprocessing

    print(f"cpus: {multiprocessing.cpu_count()}; numpy {np.__version__}")
    ticks = ticks_file(args.rows, args.symbols, args.ticks)
    job, plan, data, t_features = load(ticks, 2)
    n = len(data)
    print(f"{n:,} ticks of {len(data.symbols)} symbols; features for the rules (zscore, rsi) "
          f"by the engine in {t_features:.2f} s ({n / t_features:,.0f} ticks/s)")
    tf = bench_tickflow(job, plan, data, args.repeat)
    res = tf["result"]
    print(f"signals: {int(np.count_nonzero(tf['code'])):,} rows with an entry or exit flag; "
          f"{res.counters['trade_count']:,} trades")
    rows = [("tickflow: rules -> signal codes", tf["signals_s"]),
            ("tickflow: fills + equity (run_simulation)", tf["sim_s"]),
            ("tickflow: signals -> fills -> equity", tf["signals_s"] + tf["sim_s"]),
            ("tickflow: + every metric, 14 symbols", tf["metrics_s"])]
    vb = None
    if not args.skip_vectorbt:
        try:
            vb = bench_vectorbt(data, tf["code"], args.repeat)
        except ImportError as exc:
            print(f"vectorbt is not importable here ({exc}); install it with "
                  f"`pip install -e '.[bench]'`")
    if vb is not None:
        rows += [(f"vectorbt {vb['version']}: pivot to per-symbol columns", vb["pivot_s"]),
                 ("vectorbt: from_signals + value()", vb["run_s"]),
                 ("vectorbt: pivot + from_signals + value()", vb["pivot_s"] + vb["run_s"])]
    print(f"\n{'single run (best of ' + str(args.repeat) + ')':<48} {'seconds':>9} "
          f"{'ticks/s':>14}")
    for name, sec in rows:
        print(f"{name:<48} {sec:>9.3f} {n / sec:>14,.0f}")
    if vb is not None:
        ours = tf["signals_s"] + tf["sim_s"]
        print(f"\ntickflow signals -> fills -> equity vs vectorbt from_signals + value(): "
              f"{vb['run_s'] / ours:.2f}x (> 1: tickflow faster; target >= 0.5); "
              f"vectorbt's first call (JIT) took {vb['first_s']:.1f} s")
        print(agreement(res, vb["pf"], data.symbols))
    del data, tf, vb
    if not args.skip_sweep:
        sweep_ticks = ticks_file(args.sweep_rows, args.symbols, None) \
            if args.sweep_rows != args.rows else ticks
        print(f"\nsweep of {args.points} points (entry_z x entry_rsi) on "
              f"{args.sweep_rows:,} ticks")
        for name, sec, count in bench_sweeps(sweep_ticks, args.points,
                                             args.skip_vectorbt or args.skip_vectorbt_sweep,
                                             args.single_process_sweep):
            print(f"{name:<56} {sec:>8.1f} s  {count} points  "
                  f"{count * args.sweep_rows / sec:>14,.0f} point-ticks/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
