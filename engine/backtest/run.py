"""Run a backtest job: features from the engine, rules to signals, fills, metrics, outputs.

``run-job JOB`` dispatches here when the job's ``mode`` is ``backtest``; ``--parquet FILE``
backtests a Parquet file of raw ticks (features computed on the fly) or a research output
(features reused when the job that wrote it computes them the same way); ``--sweep`` runs the
job's ``sweep:`` block. :func:`run_point` is the pure function a sweep (local processes now,
Dask tasks later) calls per parameter point.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tickflow.engine.backtest.data import (
    MarketData,
    compute_features,
    raw_tick_columns,
    read_research_output,
    reuse_verdict,
)
from tickflow.engine.backtest.fills import ENTRY_LONG, SimResult, run_simulation
from tickflow.engine.backtest.metrics import result_metrics
from tickflow.engine.backtest.plan import StrategyPlan, build_plan
from tickflow.engine.backtest.spec import StrategySpec
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.errors import SourceError
from tickflow.engine.loader import LoadedJob, load_job

DEFAULT_TICKS = "data/sim_ticks.parquet"
DEFAULT_TICK_ROWS = 2_000_000


@dataclass
class Backtest:
    """One backtest's results: the strategy, its buy-and-hold benchmark, their metrics."""

    job: CompiledJob
    data: MarketData
    result: SimResult
    benchmark: SimResult | None
    metrics: dict[str, float]
    benchmark_metrics: dict[str, float]
    per_symbol: dict[str, dict[str, float]]
    benchmark_per_symbol: dict[str, dict[str, float]]
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def strategy(self) -> StrategySpec:
        assert self.job.spec.strategy is not None
        return self.job.spec.strategy


def load_backtest_job(job_path: str, sets: Sequence[str] = (), parquet: str | None = None,
                      say: Any = None) -> CompiledJob:
    """Load and compile a backtest job, pointing its source at ``parquet`` when given.

    The default simulated ticks are generated when missing (as ``make demo`` does); the
    source of a research output is projected on its raw tick columns, so the job's steps
    compile against it.
    """
    loaded = load_job(job_path, overrides=list(sets))
    sources = loaded.data.get("sources") or []
    if parquet is not None and sources and isinstance(sources[0], dict):
        if not os.path.isfile(os.path.expanduser(parquet)):
            raise SourceError(f"--parquet: no such file: {parquet!r}")
        sources[0] = {"kind": "parquet", "path": parquet,
                      "columns": raw_tick_columns(os.path.expanduser(parquet)),
                      **({"id": sources[0]["id"]} if sources[0].get("id") else {})}
    elif sources and isinstance(sources[0], dict):
        _ensure_default_ticks(loaded, say)
    return compile_job(loaded)


def _is_file_source(kind: Any) -> bool:
    """Whether ``kind`` names a source that reads files (an unknown kind is compile's to report)."""
    from tickflow.engine.connector_registry import get_connector
    from tickflow.engine.contract import FileSource
    from tickflow.engine.registry import UnknownNameError

    if not isinstance(kind, str):
        return False
    try:
        return issubclass(get_connector("source", kind).cls, FileSource)
    except UnknownNameError:
        return False


def _ensure_default_ticks(loaded: LoadedJob, say: Any) -> None:
    src = loaded.data["sources"][0]
    path = src.get("path")
    if not _is_file_source(src.get("kind")) or not isinstance(path, str) or \
            os.path.exists(os.path.expanduser(path)) or any(c in path for c in "*?["):
        return
    if path != DEFAULT_TICKS:
        raise SourceError(f"parquet source: no such file or directory: {path!r}; make simulated "
                          f"ticks with `run-job simulate -o {path} --rows {DEFAULT_TICK_ROWS}`, "
                          f"or point the job (TICKS=...) or --parquet at recorded ticks")
    from tickflow.connectors.simulator import write_simulated_parquet

    if say is not None:
        say(f"{DEFAULT_TICKS} is missing: simulating {DEFAULT_TICK_ROWS:,} ticks of 14 symbols "
            f"(seed 7), as `run-job simulate -o {DEFAULT_TICKS} --rows {DEFAULT_TICK_ROWS}` "
            f"or `make demo` would")
    write_simulated_parquet(path, rows=DEFAULT_TICK_ROWS, symbols=14, seed=7)


def load_market_data(job: CompiledJob, plan: StrategyPlan, parquet: str | None = None,
                     workers: int = 1) -> MarketData:
    """The columns the strategy reads: reused from a research output if it fits, else computed."""
    if parquet is not None:
        ok, why = reuse_verdict(os.path.expanduser(parquet), job, set(plan.columns))
        if ok:
            return read_research_output(os.path.expanduser(parquet), job, set(plan.columns),
                                        why)
        data = compute_features(job, set(plan.columns), workers)
        data.notes.append(f"features not reused from {parquet}: {why}")
        return data
    return compute_features(job, set(plan.columns), workers)


def buy_and_hold_codes(sym: np.ndarray, n_symbols: int) -> np.ndarray:
    """An entry signal on each symbol's first tick and nothing else (fills on its second)."""
    code = np.zeros(len(sym), dtype=np.int8)
    _, first = np.unique(sym, return_index=True)
    code[first] = ENTRY_LONG
    return code


def benchmark_strategy(strategy: StrategySpec) -> StrategySpec:
    """Buy and hold: each symbol invests its whole equal share, same fees and quotes."""
    return strategy.model_copy(update={
        "sizing": strategy.sizing.model_copy(update={"method": "fixed_fraction",
                                                     "fraction": 1.0}),
        "portfolio": strategy.portfolio.model_copy(update={"mode": "per_symbol",
                                                           "max_positions": None}),
        "execution": strategy.execution.model_copy(update={
            "order_type": "market", "stop_loss": None, "take_profit": None,
            "max_holding": None})})


def simulate(data: MarketData, plan: StrategyPlan, strategy: StrategySpec) -> SimResult:
    """Signals to fills to equity for one strategy over ``data``."""
    cols = data.columns
    code = plan.signal_codes(cols, data.sym)
    vol = cols.get(plan.vol_column) if plan.vol_column else None
    return run_simulation(data.ts, data.sym, len(data.symbols), cols["price"], cols["best_bid"],
                          cols["best_ask"], code, vol, strategy)


def evaluate(job: CompiledJob, data: MarketData, plan: StrategyPlan | None = None,
             strategy: StrategySpec | None = None, with_benchmark: bool = True,
             per_symbol: bool = True) -> Backtest:
    """Run the strategy (and its buy-and-hold benchmark) on ``data``; compute every metric."""
    strategy = strategy or job.spec.strategy
    assert strategy is not None
    plan = plan or build_plan(strategy)
    start = time.perf_counter()
    result = simulate(data, plan, strategy)
    seconds = time.perf_counter() - start
    per = {s: result_metrics(result, i) for i, s in enumerate(data.symbols)} if per_symbol \
        else {}
    bench, bmetrics, bper = None, {}, {}
    if with_benchmark:
        cols = data.columns
        bench = run_simulation(data.ts, data.sym, len(data.symbols), cols["price"],
                               cols["best_bid"], cols["best_ask"],
                               buy_and_hold_codes(data.sym, len(data.symbols)), None,
                               benchmark_strategy(strategy))
        bmetrics = result_metrics(bench)
        bper = {s: result_metrics(bench, i) for i, s in enumerate(data.symbols)}
    return Backtest(job, data, result, bench, result_metrics(result), bmetrics, per, bper,
                    seconds)


# ------------------------------------------------------------------ sweep points

_FEATURE_CACHE: dict[tuple[Any, ...], tuple[CompiledJob, MarketData]] = {}
_FEATURE_LOCK = threading.Lock()  # sweeps on threads share one feature computation


@functools.lru_cache(maxsize=32)
def _loaded_job_key(job_path: str, mtime: float, sets: tuple[str, ...],
                    environ: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The job as loaded (canonical JSON) and its source path; parsed once per setting."""
    data = load_job(job_path, overrides=list(sets), env=dict(environ)).data
    source = (data.get("sources") or [{}])[0]
    path = str(source.get("path") or "") if isinstance(source, dict) else ""
    return json.dumps(data, sort_keys=True, default=str), path


def run_point(job_path: str, overrides: dict[str, Any], *, sets: Sequence[str] = (),
              parquet: str | None = None,
              train_fraction: float | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one parameter point: ``{"all": {...}}`` or ``{"train": ..., "test": ...}``.

    ``overrides`` maps sweep parameter names (``strategy.params`` keys or paths such as
    ``steps.rsi.params.period``) to values. Pure apart from a per-process cache of features
    keyed by everything that changes them, so that points differing only in rule thresholds
    share one feature computation.
    """
    from tickflow.engine.backtest.sweep import apply_strategy_sets, overrides_to_sets

    strategy_sets, step_sets = overrides_to_sets(job_path, overrides)
    base_sets = [*sets, *step_sets]
    # the key: the job as loaded (YAML, environment, kernel overrides) and the data file
    loaded_text, source_path = _loaded_job_key(
        os.path.abspath(job_path), os.path.getmtime(job_path), tuple(base_sets),
        tuple(sorted(os.environ.items())))
    path = os.path.expanduser(parquet or source_path)
    key = (loaded_text, parquet, os.path.getmtime(path) if os.path.isfile(path) else None)
    with _FEATURE_LOCK:
        cached = _FEATURE_CACHE.get(key)
        job = cached[0] if cached else load_backtest_job(job_path, base_sets, parquet)
        assert job.spec.strategy is not None
        strategy = apply_strategy_sets(job.spec.strategy, strategy_sets)
        plan = build_plan(strategy)
        if cached is None or not plan.columns <= set(cached[1].columns):
            _FEATURE_CACHE.clear()
            cached = (job, load_market_data(job, plan, parquet, workers=1))
            _FEATURE_CACHE[key] = cached
    data = cached[1]

    def metrics(part: MarketData) -> dict[str, float]:
        return evaluate(job, part, plan, strategy, with_benchmark=False,
                        per_symbol=False).metrics

    if train_fraction is None:
        return {"all": metrics(data)}
    lo, hi = data.ts[0], data.ts[-1]
    cut = int(np.searchsorted(data.ts, lo + (hi - lo) * train_fraction, side="left"))
    return {"train": metrics(data.take(0, cut)), "test": metrics(data.take(cut, len(data)))}


# ------------------------------------------------------------------ the command

def output_paths(job: CompiledJob) -> dict[str, Path]:
    strategy = job.spec.strategy
    assert strategy is not None
    out = Path(os.path.expanduser(strategy.output_dir))
    name = job.spec.name
    return {"trades": out / f"{name}_trades.parquet", "equity": out / f"{name}_equity.parquet",
            "report": out / f"{name}_report.html", "sweep": out / f"{name}_sweep.parquet",
            "sweep_report": out / f"{name}_sweep.html"}


def run_backtest(job: CompiledJob, parquet: str | None = None, workers: int = 1,
                 write: bool = True) -> Backtest:
    """The whole single backtest: data, simulation, metrics and (optionally) the outputs."""
    from tickflow.engine.backtest.report import write_outputs

    strategy = job.spec.strategy
    assert strategy is not None
    plan = build_plan(strategy)
    data = load_market_data(job, plan, parquet, workers)
    bt = evaluate(job, data, plan)
    if write:
        bt.paths = write_outputs(bt, output_paths(job))
    return bt
