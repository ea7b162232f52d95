"""The execution simulator: next-tick fills at bid/ask, fees, risk exits, sizing, no look-ahead.

Every expected number below is worked out by hand from the tape in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.backtest.helpers import T0, S, run, strategy, tape
from tickflow.engine.backtest.fills import run_simulation
from tickflow.engine.backtest.plan import ENTRY_LONG, ENTRY_SHORT, EXIT_LONG, EXIT_SHORT
from tickflow.engine.backtest.sim_layout import REASONS

NAN = math.nan


def only_trade(result):
    assert result.counters["trade_count"] == 1
    return {k: v[0] for k, v in result.trades.items()}


def test_fill_is_the_next_tick_of_the_same_symbol_at_the_ask_then_the_bid() -> None:
    rows = [(0.0, 0, 100, 99.9, 100.1, ENTRY_LONG),   # signal on symbol 0
            (0.1, 1, 50, 49.9, 50.1, 0),              # symbol 1 ticks in between
            (0.2, 0, 110, 109.9, 110.1, 0),           # symbol 0's next tick: buy at its ask
            (0.3, 0, 120, 119.9, 120.1, EXIT_LONG),
            (0.4, 1, 50, 49.9, 50.1, 0),
            (0.5, 0, 130, 129.9, 130.1, 0)]           # sell at the bid
    t = only_trade(run(rows, strategy()))
    # a same-tick fill would buy at 100.1; a signal shifted across symbols at 50.1 at 0.1 s
    assert t["symbol"] == 0 and t["side"] == 1
    assert t["entry_signal_ts"] == T0 and t["entry_ts"] == T0 + 200_000
    assert t["entry_price"] == 110.1
    assert t["exit_signal_ts"] == T0 + 300_000 and t["exit_ts"] == T0 + 500_000
    assert t["exit_price"] == 129.9
    qty = 1000.0 / 110.1
    assert t["quantity"] == pytest.approx(qty)
    assert t["pnl"] == pytest.approx(qty * (129.9 - 110.1))
    assert REASONS[t["reason"]] == "signal"


def test_a_signal_never_fills_on_its_own_tick_even_at_the_same_timestamp() -> None:
    rows = [(0.0, 0, 100, 99, 101, ENTRY_LONG),
            (0.0, 0, 100, 104, 105, 0),               # same microsecond, later row
            (1.0, 0, 100, 99, 101, 0)]
    t = only_trade(run(rows, strategy()))
    assert t["entry_price"] == 105.0 and t["entry_ts"] == T0


def test_latency_fills_on_the_first_tick_at_or_after_signal_plus_latency() -> None:
    rows = [(0.00, 0, 100, 99, 101, ENTRY_LONG),
            (0.01, 0, 100, 99, 102, 0),
            (0.03, 0, 100, 99, 103, 0),
            (0.05, 0, 100, 99, 104, 0),               # 0 + 50 ms: the first eligible tick
            (0.07, 0, 100, 99, 105, 0)]
    t = only_trade(run(rows, strategy(execution={"latency_ms": 50})))
    assert t["entry_ts"] == T0 + 50_000 and t["entry_price"] == 104.0


def test_without_quotes_fills_at_price_plus_minus_slippage() -> None:
    rows = [(0, 0, 100, NAN, NAN, ENTRY_LONG),
            (1, 0, 200, NAN, NAN, EXIT_LONG),         # buy at 200 * (1 + 10 bps)
            (2, 0, 300, NAN, NAN, 0)]                 # sell at 300 * (1 - 10 bps)
    t = only_trade(run(rows, strategy(execution={"slippage_bps": 10})))
    assert t["entry_price"] == pytest.approx(200.2) and t["exit_price"] == pytest.approx(299.7)


def test_fees_and_final_equity_by_hand() -> None:
    # 10 bps taker: buy 10 units at 100 (fee 1.00), sell at 105 (fee 1.05)
    rows = [(0, 0, 100, 99, 100, ENTRY_LONG),
            (1, 0, 100, 99, 100, EXIT_LONG),
            (2, 0, 106, 105, 106, 0),
            (3, 0, 106, 105, 106, 0)]
    res = run(rows, strategy(execution={"fees": {"taker_bps": 10}},
                             portfolio={"initial_cash": 10_000}))
    t = only_trade(res)
    assert t["quantity"] == pytest.approx(10.0)
    assert t["fees"] == pytest.approx(2.05)
    assert t["pnl"] == pytest.approx(50.0 - 2.05)
    assert res.equity[-1] == pytest.approx(10_000 + 47.95)
    assert res.symbol_fees.sum() == pytest.approx(2.05)
    # grid 1 s, after the ticks at t=0 (flat), t=1 (bought at 100, marked at the mid 99.5,
    # fee 1), t=2 (sold at 105), t=3
    assert res.equity.tolist() == pytest.approx([10_000, 10_000 - 5 - 1, 10_047.95,
                                                 10_047.95])
    assert (res.grid_ts - T0).tolist() == [0, S, 2 * S, 3 * S]


@pytest.mark.parametrize(("kind", "bids", "reason"), [
    ("stop_loss", [96.0, 94.9, 93.0], "stop_loss"),      # -5.1% at 94.9 -> out at 93
    ("take_profit", [105.0, 110.5, 111.0], "take_profit"),  # +10.5% at 110.5 -> out at 111
])
def test_risk_exits_trigger_at_the_executable_quote_and_fill_next_tick(
        kind: str, bids: list[float], reason: str) -> None:
    rows = [(0, 0, 100, 99, 100, ENTRY_LONG),
            (1, 0, 100, 99.5, 100, 0),                    # entry at 100
            *[(2 + k, 0, b, b, b + 0.5, 0) for k, b in enumerate(bids)]]
    spec = strategy(execution={"stop_loss": 0.05, "take_profit": 0.10})
    t = only_trade(run(rows, spec))
    assert REASONS[t["reason"]] == reason
    assert t["exit_signal_ts"] == T0 + 3 * S and t["exit_ts"] == T0 + 4 * S
    assert t["exit_price"] == bids[2]


def test_max_holding_time() -> None:
    rows = [(0, 0, 100, 99, 100, ENTRY_LONG),
            (1, 0, 100, 99, 100, 0),                      # entry at t=1
            (2, 0, 100, 99, 100, 0),
            (3, 0, 100, 99, 100, 0),                      # held 2 s: exit order
            (4, 0, 100, 98, 100, 0)]                      # filled at the bid, 98
    t = only_trade(run(rows, strategy(execution={"max_holding": "2s"})))
    assert REASONS[t["reason"]] == "max_holding"
    assert t["exit_ts"] == T0 + 4 * S and t["exit_price"] == 98.0


def test_short_sells_at_the_bid_covers_at_the_ask_and_reversal_closes_first() -> None:
    spec = strategy(short={"entry": "price > 0", "exit": "price < 0"})
    rows = [(0, 0, 100, 99, 101, ENTRY_SHORT),
            (1, 0, 100, 99, 101, EXIT_SHORT),             # short at the bid, 99
            (2, 0, 90, 89, 91, ENTRY_LONG),               # cover at the ask, 91
            (3, 0, 90, 89, 91, ENTRY_SHORT),              # buy at 91 (long)
            (4, 0, 95, 94, 96, 0)]                        # reverse: sell at 94, short at 94;
    # the short left open is covered at the end at the last ask, 96
    res = run(rows, spec)
    t = res.trades
    assert res.counters["trade_count"] == 3
    assert t["side"].tolist() == [-1, 1, -1]
    assert t["entry_price"].tolist() == [99.0, 91.0, 94.0]
    assert t["exit_price"].tolist() == [91.0, 94.0, 96.0]  # the end covers at the ask
    assert [REASONS[r] for r in t["reason"]] == ["signal", "reverse", "end"]
    assert t["pnl"][0] == pytest.approx(1000 / 99 * (99 - 91))


def test_limit_order_rests_at_the_bid_and_fills_when_the_ask_reaches_it() -> None:
    rows = [(0.0, 0, 100, 99.0, 99.4, ENTRY_LONG),
            (0.1, 0, 100, 99.0, 99.2, 0),                 # reaches the book: bid 99.0
            (0.2, 0, 100, 98.9, 99.1, 0),                 # ask 99.1 > 99.0: not yet
            (0.3, 0, 100, 98.8, 99.0, 0),                 # ask 99.0: filled at 99.0
            (0.4, 0, 100, 98.8, 99.0, 0)]
    spec = strategy(execution={"order_type": "limit", "fees": {"maker_bps": 2, "taker_bps": 0}})
    res = run(rows, spec)
    t = res.trades
    assert t["entry_ts"][0] == T0 + 300_000 and t["entry_price"][0] == 99.0
    assert t["fees"][0] == pytest.approx(1000 * 2e-4)      # maker fee; the end close is free


def test_unfilled_limit_entry_is_cancelled_after_the_timeout() -> None:
    rows = [(0.0, 0, 100, 99.0, 99.4, ENTRY_LONG),
            (0.1, 0, 100, 99.0, 99.4, 0),                 # posted at 99.0
            (0.5, 0, 100, 99.1, 99.5, 0),
            (1.2, 0, 100, 99.2, 99.6, 0)]                 # 1.1 s later: cancelled
    res = run(rows, strategy(execution={"order_type": "limit", "limit_timeout": "1s"}))
    assert res.counters["trade_count"] == 0
    assert res.counters["limit_orders_cancelled"] == 1


def test_unfilled_limit_exit_is_sent_as_a_market_order_after_the_timeout() -> None:
    rows = [(0.0, 0, 99.2, 99.0, 99.4, ENTRY_LONG),
            (0.1, 0, 99.2, 99.0, 99.4, 0),                # entry posted at the bid, 99.0
            (0.2, 0, 98.9, 98.8, 99.0, 0),                # ask 99.0: entry filled at 99.0
            (1.0, 0, 100.2, 100.0, 100.4, EXIT_LONG),
            (1.1, 0, 100.2, 100.0, 100.4, 0),             # exit posted at the ask, 100.4
            (1.5, 0, 100.4, 100.2, 100.6, 0),             # bid 100.2 < 100.4: resting
            (2.1, 0, 98.7, 98.5, 98.9, 0),                # 1.0 s after posting: market, bid
            (3.0, 0, 90.2, 90.0, 90.4, 0)]                # (a cancelled exit would end here)
    spec = strategy(execution={"order_type": "limit", "limit_timeout": "1s",
                               "fees": {"maker_bps": 2, "taker_bps": 10}})
    res = run(rows, spec)
    t = only_trade(res)
    assert t["entry_ts"] == T0 + 200_000 and t["entry_price"] == 99.0
    assert t["exit_signal_ts"] == T0 + 1_000_000 and t["exit_ts"] == T0 + 2_100_000
    assert t["exit_price"] == 98.5
    assert REASONS[t["reason"]] == "signal"
    qty = 1000.0 / 99.0
    assert t["fees"] == pytest.approx(qty * 99.0 * 2e-4 + qty * 98.5 * 10e-4)  # maker + taker
    assert t["pnl"] == pytest.approx(qty * (98.5 - 99.0) - t["fees"])
    assert res.counters["limit_orders_cancelled"] == 0


def test_max_positions_rejects_further_entries() -> None:
    rows = [(0.0, 0, 10, 9, 10, ENTRY_LONG), (0.1, 1, 10, 9, 10, ENTRY_LONG),
            (0.2, 2, 10, 9, 10, ENTRY_LONG), (1.0, 0, 10, 9, 10, 0),
            (1.1, 1, 10, 9, 10, 0), (1.2, 2, 10, 9, 10, 0)]
    res = run(rows, strategy(portfolio={"max_positions": 2}))
    assert res.counters["trade_count"] == 2
    assert res.counters["entries_rejected_max_positions"] == 1
    assert sorted(res.trades["symbol"].tolist()) == [0, 1]


def test_sizing_fixed_fraction_per_symbol_and_vol_target() -> None:
    rows = [(0, 0, 100, 99, 100, ENTRY_LONG), (0, 1, 50, 49, 50, ENTRY_LONG),
            (1, 0, 100, 99, 100, 0), (1, 1, 50, 49, 50, 0)]
    frac = run(rows, strategy(sizing={"method": "fixed_fraction", "fraction": 0.5},
                              portfolio={"initial_cash": 10_000}))
    # portfolio: 0.5 x 10,000 at 100 = 50 units, marked at the mid 99.5 (-25); then
    # 0.5 x 9,975 at 50 = 99.75 units
    assert frac.trades["quantity"].tolist() == pytest.approx([50.0, 99.75])
    per = run(rows, strategy(sizing={"method": "fixed_fraction", "fraction": 0.5},
                             portfolio={"initial_cash": 10_000, "mode": "per_symbol"}))
    assert per.trades["quantity"].tolist() == pytest.approx([25.0, 50.0])  # 0.5 x 5,000 each
    # vol target: per-tick vol 0.001 at the signal; 1 tick/s observed at the fill, so the
    # annual vol is 0.001 * sqrt(365 * 86400) = 5.6157; weight 0.5 / 5.6157 = 0.089036
    one = [(0, 0, 100, 99, 100, ENTRY_LONG), (1, 0, 100, 99, 100, 0)]
    vt = run(one, strategy(sizing={"method": "vol_target", "target_vol": 0.5}),
             vol=np.array([0.001, 0.002]))
    assert vt.trades["quantity"][0] * 100 == pytest.approx(0.089036 * 100_000, rel=1e-4)


def random_tape(rng: np.random.Generator, n: int, symbols: int) -> dict[str, np.ndarray]:
    ts = T0 + np.cumsum(rng.integers(1_000, 200_000, n))
    sym = rng.integers(0, symbols, n)
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    half = rng.uniform(0.01, 0.05, n)
    code = rng.choice(np.array([0, ENTRY_LONG, EXIT_LONG, ENTRY_SHORT, EXIT_SHORT], np.int8),
                      n, p=[0.8, 0.05, 0.05, 0.05, 0.05])
    return {"ts": ts, "sym": sym, "price": mid, "bid": mid - half, "ask": mid + half,
            "code": code}


def simulate(t: dict[str, np.ndarray], spec):
    return run_simulation(t["ts"], t["sym"], 3, t["price"], t["bid"], t["ask"], t["code"],
                          None, spec)


BOTH = {"short": {"entry": "price > 0", "exit": "price < 0"}}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_changing_the_future_never_changes_the_past(seed: int) -> None:
    """Trades and equity before tick k are identical whatever happens from tick k on."""
    rng = np.random.default_rng(seed)
    a = random_tape(rng, 4_000, 3)
    spec = strategy(**BOTH, execution={"latency_ms": 20, "stop_loss": 0.002})
    k = 2_000
    b = {name: v.copy() for name, v in a.items()}
    other = random_tape(np.random.default_rng(seed + 100), 4_000, 3)
    for name in ("price", "bid", "ask", "code", "sym"):
        b[name][k:] = other[name][k:]
    ra, rb = simulate(a, spec), simulate(b, spec)
    cut = a["ts"][k]
    done_a = ra.trades["exit_ts"] < cut
    done_b = rb.trades["exit_ts"] < cut
    assert done_a.sum() > 20
    for name in ra.trades:
        np.testing.assert_array_equal(ra.trades[name][done_a], rb.trades[name][done_b])
    before = ra.grid_ts < cut
    np.testing.assert_array_equal(ra.equity[before], rb.equity[before])


def test_every_market_fill_is_the_symbols_first_tick_after_signal_plus_latency() -> None:
    rng = np.random.default_rng(7)
    t = random_tape(rng, 5_000, 3)
    res = simulate(t, strategy(**BOTH, execution={"latency_ms": 30}))
    tr = res.trades
    assert len(tr["entry_ts"]) > 100
    for kind in ("entry", "exit"):
        for s, sig, fill in zip(tr["symbol"], tr[f"{kind}_signal_ts"], tr[f"{kind}_ts"],
                                strict=True):
            if kind == "exit" and fill == t["ts"][-1] and sig == fill:
                continue  # closed at the end of the data
            mine = t["ts"][t["sym"] == s]
            first = mine[np.searchsorted(mine, max(sig + 30_000, sig + 1))]
            assert fill == first
    # buys at the ask, sells at the bid of the fill tick
    row = {(int(s), int(ts)): i for i, (s, ts) in enumerate(zip(t["sym"], t["ts"],
                                                                strict=True))}
    for s, side, ets, epx in zip(tr["symbol"], tr["side"], tr["entry_ts"], tr["entry_price"],
                                 strict=True):
        i = row[(int(s), int(ets))]
        assert epx == (t["ask"][i] if side > 0 else t["bid"][i])


def test_tape_helper_is_sane() -> None:
    t = tape([(0, 0, 1, 1, 1, 0), (1.5, 0, 1, 1, 1, 0)])
    assert (t["ts"] - T0).tolist() == [0, 1_500_000]


def test_ticks_without_any_price_are_counted_not_traded_on() -> None:
    rows = [(0, 0, 100, 99, 101, ENTRY_LONG),
            (1, 0, NAN, NAN, NAN, 0),                     # no price: cannot fill here
            (2, 0, 100, 99, 102, 0)]
    res = run(rows, strategy())
    assert res.counters["ticks_without_price"] == 1
    assert res.trades["entry_ts"][0] == T0 + 2 * S and res.trades["entry_price"][0] == 102.0
