"""Every metric against a small example worked out by hand (not by the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.backtest.helpers import T0, S, run, strategy
from tickflow.engine.backtest.metrics import equity_metrics, result_metrics, trade_metrics
from tickflow.engine.backtest.plan import ENTRY_LONG, EXIT_LONG

DAY = 86_400 * S


def test_return_risk_and_drawdown_of_a_three_day_path() -> None:
    # equity 100 -> 110 -> 99 -> 108.9, one point a day: returns +10%, -10%, +10%
    ts = T0 + DAY * np.arange(4)
    m = equity_metrics(ts, np.array([100.0, 110.0, 99.0, 108.9]))
    assert m["total_return"] == pytest.approx(0.089)
    # 3 days of a 365-day year: (1.089) ** (365 / 3) - 1
    assert m["annual_return"] == pytest.approx(1.089 ** (365 / 3) - 1, rel=1e-9)
    # mean 1/30; sample std sqrt(((1/15)^2 + (2/15)^2 + (1/15)^2) / 2) = sqrt(1/75);
    # 3 returns in 3/365 years: 365 periods a year
    assert m["volatility"] == pytest.approx(math.sqrt(365 / 75))            # 2.20605
    assert m["sharpe"] == pytest.approx(math.sqrt(75) / 30 * math.sqrt(365))  # 5.51513
    # downside deviation sqrt((0 + 0.01 + 0) / 3)
    assert m["sortino"] == pytest.approx((1 / 30) / math.sqrt(0.01 / 3) * math.sqrt(365))
    assert m["max_drawdown"] == pytest.approx(99 / 110 - 1)                  # -10%
    assert m["max_drawdown_duration_s"] == 2 * 86_400   # from the peak on day 1, not regained
    assert m["calmar"] == pytest.approx((1.089 ** (365 / 3) - 1) / 0.1, rel=1e-9)


def test_drawdown_duration_is_the_longest_time_to_regain_a_peak() -> None:
    # hourly: 100, 90, 95, 100 (regained after 3 h), 80, 120 (regained after 2 h)
    ts = T0 + 3_600 * S * np.arange(6)
    m = equity_metrics(ts, np.array([100.0, 90, 95, 100, 80, 120]))
    assert m["max_drawdown_duration_s"] == 3 * 3_600
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["total_return"] == pytest.approx(0.2)


def test_flat_equity_has_no_sharpe_and_no_drawdown() -> None:
    ts = T0 + S * np.arange(5)
    m = equity_metrics(ts, np.full(5, 1_000.0))
    assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert math.isnan(m["sharpe"]) and math.isnan(m["calmar"])
    assert m["volatility"] == 0.0 and m["max_drawdown_duration_s"] == 0


def test_trade_statistics() -> None:
    pnl = np.array([10.0, -5.0, 20.0, -10.0, 0.0])
    value = np.array([100.0, 100.0, 200.0, 100.0, 50.0])
    m = trade_metrics(pnl, value)
    assert m["trade_count"] == 5
    assert m["win_rate"] == pytest.approx(2 / 5)             # a zero trade is not a win
    assert m["profit_factor"] == pytest.approx(30 / 15)
    assert m["avg_trade"] == pytest.approx(15 / 5)
    # returns 0.1, -0.05, 0.1, -0.1, 0
    assert m["avg_trade_return"] == pytest.approx(0.05 / 5)
    assert trade_metrics(np.array([1.0, 2.0]), np.ones(2))["profit_factor"] == math.inf
    assert math.isnan(trade_metrics(np.zeros(0), np.zeros(0))["win_rate"])


def test_turnover_exposure_and_fees_of_one_round_trip() -> None:
    # 10 bps taker, 1,000 notional: buy 10 @ 100 at t=1 (fee 1.00), sell 10 @ 101 at t=3
    # (fee 1.01); ticks at t = 0..4 s
    rows = [(0, 0, 99.5, 99, 100, ENTRY_LONG), (1, 0, 99.5, 99, 100, 0),
            (2, 0, 99.5, 99, 100, EXIT_LONG), (3, 0, 101.5, 101, 102, 0),
            (4, 0, 101.5, 101, 102, 0)]
    res = run(rows, strategy(execution={"fees": {"taker_bps": 10}},
                             portfolio={"initial_cash": 10_000}))
    m = result_metrics(res)
    # equity at t=0..4: 10,000; 10,000 - 1 - 5 (marked at the mid 99.5) twice; 10,007.99 twice
    assert res.equity.tolist() == pytest.approx([10_000, 9_994, 9_994, 10_007.99, 10_007.99])
    assert m["fees_paid"] == pytest.approx(2.01)
    assert m["turnover"] == pytest.approx(2_010 / (50_003.98 / 5))
    assert m["exposure"] == pytest.approx(2 / 4)            # held from t=1 to t=3 of 4 s
    assert m["trade_count"] == 1 and m["win_rate"] == 1.0
    assert m["total_return"] == pytest.approx(7.99 / 10_000)
    sym = result_metrics(res, 0)                            # the only symbol: the same figures
    assert sym["fees_paid"] == pytest.approx(2.01) and sym["exposure"] == pytest.approx(0.5)


def test_per_symbol_equity_is_a_share_or_a_contribution() -> None:
    # symbol 0 gains 10 x (105 - 100) = 50; symbol 1 never trades
    rows = [(0, 0, 100, 99, 100, ENTRY_LONG), (0, 1, 10, 9, 10, 0),
            (1, 0, 100, 99, 100, EXIT_LONG), (2, 0, 106, 105, 106, 0)]
    shared = run(rows, strategy(portfolio={"initial_cash": 10_000}))
    own = run(rows, strategy(portfolio={"initial_cash": 10_000, "mode": "per_symbol"}))
    assert shared.symbol_equity[-1].tolist() == pytest.approx([10_050, 10_000])
    assert own.symbol_equity[-1].tolist() == pytest.approx([5_050, 5_000])
    assert result_metrics(shared, 0)["total_return"] == pytest.approx(50 / 10_000)
    assert result_metrics(own, 0)["total_return"] == pytest.approx(50 / 5_000)
