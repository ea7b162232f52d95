"""The ``strategy:`` and ``sweep:`` blocks of a backtest job, as frozen pydantic models.

Rules are rule-language text (engine/rules.py); ``{name}`` placeholders in them are filled from
``strategy.params`` before parsing, which is what a sweep varies. The compiler checks every rule
against the job's columns (engine/backtest/plan.py), so a typo fails ``run-job validate``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tickflow.engine.durations import parse_duration_us

METRIC_NAMES = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
                "max_drawdown", "max_drawdown_duration_s", "win_rate", "profit_factor",
                "avg_trade", "avg_trade_return", "trade_count", "turnover", "exposure",
                "fees_paid")


def duration_us(text: str) -> int:
    """'30s' -> 30_000_000 (the job-wide grammar, :mod:`tickflow.engine.durations`)."""
    return parse_duration_us(text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SideRules(_Strict):
    """When to open and when to close a position on one side (long or short)."""

    entry: str = Field(description="rule that opens a position, e.g. `zscore < -{entry_z}`")
    exit: str = Field(description="rule that closes it, e.g. `zscore > 0 or rsi > 50`")


class SizingSpec(_Strict):
    """How large a position is, decided when the entry fills."""

    method: Literal["fixed_notional", "fixed_fraction", "vol_target"] = Field(
        "fixed_fraction", description="fixed_notional: `notional` per position; fixed_fraction: "
        "`fraction` of equity; vol_target: `target_vol` / annualised `vol_column`, capped at "
        "`max_leverage`, times equity")
    notional: float = Field(10_000.0, gt=0, description="position value (fixed_notional)")
    fraction: float = Field(0.1, gt=0, le=10, description="share of equity (fixed_fraction)")
    target_vol: float = Field(0.5, gt=0, description="annualised volatility a position aims "
                                                     "at (vol_target)")
    vol_column: str = Field("riskmetrics_vol", description="per-tick volatility of log returns "
                            "(vol_target); annualised with the symbol's observed tick rate")
    max_leverage: float = Field(1.0, gt=0, description="cap on position value / equity "
                                                       "(vol_target)")


class FeesSpec(_Strict):
    """Exchange fees in basis points of traded value."""

    taker_bps: float = Field(5.0, ge=0, description="fee of a market order (crosses the spread)")
    maker_bps: float = Field(1.0, ge=-10, description="fee of a passive limit order "
                                                      "(order_type: limit)")


class ExecutionSpec(_Strict):
    """How signals become fills: never before the symbol's next tick after the signal."""

    order_type: Literal["market", "limit"] = Field(
        "market", description="market: buy at the ask, sell at the bid; limit: rest at the "
        "touch (buy at the bid) and fill when a later tick's opposite quote reaches it")
    latency_ms: float = Field(0.0, ge=0, description="the order reaches the market this long "
                              "after the signal: it fills on the symbol's first tick at or "
                              "after signal time + latency (and never on the signal's tick)")
    limit_timeout: str = Field("5s", description="an unfilled limit order is cancelled (entry) "
                               "or sent as a market order (exit) after this long")
    slippage_bps: float = Field(2.0, ge=0, description="when a tick has no quotes, fills at "
                                "price +/- this many bps")
    fees: FeesSpec = Field(default_factory=FeesSpec)
    stop_loss: float | None = Field(None, gt=0, lt=1, description="exit when the position "
                                    "loses this fraction at the executable quote (0.01 = 1%)")
    take_profit: float | None = Field(None, gt=0, description="exit when the position gains "
                                      "this fraction at the executable quote")
    max_holding: str | None = Field(None, description="exit after holding this long, e.g. 30m")

    @field_validator("limit_timeout", "max_holding")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_us(value)
        return value


class PortfolioSpec(_Strict):
    """Capital and how it is shared between symbols."""

    initial_cash: float = Field(100_000.0, gt=0, description="starting equity")
    mode: Literal["portfolio", "per_symbol"] = Field(
        "portfolio", description="portfolio: one account, sizing from total equity, at most "
        "`max_positions` open; per_symbol: each symbol trades its own equal share of the cash")
    max_positions: int | None = Field(None, ge=1, description="most positions open at once "
                                      "(portfolio mode); further entries are skipped, counted")


class StrategySpec(_Strict):
    """Entry/exit rules, sizing, execution and outputs of a backtest (mode: backtest)."""

    long: SideRules | None = Field(None, description="rules of long positions")
    short: SideRules | None = Field(None, description="rules of short positions")
    params: dict[str, float] = Field(default_factory=dict, description="values of the "
                                     "`{name}` placeholders in the rules (what sweeps vary)")
    sizing: SizingSpec = Field(default_factory=SizingSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    portfolio: PortfolioSpec = Field(default_factory=PortfolioSpec)
    grid: str = Field("10s", description="equity is sampled on this calendar grid for returns, "
                      "volatility, Sharpe and drawdowns")
    output_dir: str = Field("out", description="directory of `<name>_trades.parquet`, "
                            "`<name>_equity.parquet` and `<name>_report.html`")
    plot_symbol: str | None = Field(None, description="symbol whose prices and trades the "
                                    "report draws (default: the most traded one)")

    @model_validator(mode="after")
    def _a_side(self) -> StrategySpec:
        if self.long is None and self.short is None:
            raise ValueError("give `long:` and/or `short:` rules")
        return self

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        if duration_us(value) <= 0:
            raise ValueError("the grid must be longer than 0")
        return value

    @field_validator("params")
    @classmethod
    def _names(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"a parameter name must be an identifier, found {name!r}")
        return value


class RangeSpec(_Strict):
    """A numeric range: stepped values for a grid, or uniform draws for a random search."""

    min: float = Field(description="lowest value")
    max: float = Field(description="highest value")
    step: float | None = Field(None, gt=0, description="spacing (required for a grid)")

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class WalkForwardSpec(_Strict):
    """Split the data in time: choose on the first part, report the second (out of sample)."""

    train_fraction: float = Field(0.7, gt=0, lt=1, description="share of the calendar time "
                                  "span used for training (in sample)")


class SweepSpec(_Strict):
    """Parameter sweep of a backtest (`run-job JOB --sweep`)."""

    method: Literal["grid", "random"] = Field("grid", description="every combination, or "
                                              "`samples` random ones")
    parameters: dict[str, list[int | float] | RangeSpec] = Field(
        min_length=1, description="name: values or {min, max, step}; a name is a "
        "`strategy.params` key, or a path such as `steps.rsi.params.period` (step by id) or "
        "`strategy.execution.stop_loss`")
    samples: int = Field(20, ge=1, description="points drawn (random)")
    seed: int = Field(0, ge=0, description="random seed (random)")
    metric: str = Field("sharpe", description="metric the results are sorted by (descending; "
                        "ascending for volatility, max_drawdown_duration_s, fees_paid)")
    workers: int = Field(0, ge=0, description="parallel points; 0 = one per CPU core")
    pool: Literal["threads", "processes"] = Field(
        "threads", description="threads share one feature computation (the simulator and "
        "numpy release the GIL); processes isolate points at the cost of starting "
        "interpreters and computing features once per process")
    walk_forward: WalkForwardSpec | None = Field(None, description="train/test split in time")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRIC_NAMES:
            raise ValueError(f"unknown metric {value!r}; one of {', '.join(METRIC_NAMES)}")
        return value

    @field_validator("parameters")
    @classmethod
    def _values(cls, value: dict[str, list[int | float] | RangeSpec]
                ) -> dict[str, list[int | float] | RangeSpec]:
        for name, values in value.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"parameter {name!r} has no values")
        return value
