"""Small hand-made tick tapes for the backtest tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from tickflow.engine.backtest.fills import SimResult, run_simulation
from tickflow.engine.backtest.spec import StrategySpec

S = 1_000_000  # microseconds per second
T0 = 1_767_225_600 * S  # 2026-01-01 UTC


def strategy(**kw: Any) -> StrategySpec:
    """A long-only strategy (rules are not used: tests pass signal codes directly)."""
    execution = {"fees": {"taker_bps": 0.0, "maker_bps": 0.0}, "slippage_bps": 0.0,
                 **kw.pop("execution", {})}
    base: dict[str, Any] = {"long": {"entry": "price > 0", "exit": "price < 0"},
                            "sizing": {"method": "fixed_notional", "notional": 1000.0},
                            "execution": execution, "grid": "1s"}
    base.update(kw)
    return StrategySpec.model_validate(base)


def tape(rows: list[tuple[float, int, float, float, float, int]]) -> dict[str, np.ndarray]:
    """Rows of (seconds, symbol id, price, bid, ask, signal code)."""
    a = np.array(rows, dtype=np.float64)
    return {"ts": T0 + np.round(a[:, 0] * S).astype(np.int64), "sym": a[:, 1].astype(np.int64),
            "price": a[:, 2], "bid": a[:, 3], "ask": a[:, 4], "code": a[:, 5].astype(np.int8)}


def run(rows: list[tuple[float, int, float, float, float, int]], spec: StrategySpec,
        n_symbols: int | None = None, vol: np.ndarray | None = None) -> SimResult:
    t = tape(rows)
    n = n_symbols or int(t["sym"].max()) + 1
    return run_simulation(t["ts"], t["sym"], n, t["price"], t["bid"], t["ask"], t["code"], vol,
                          spec)
