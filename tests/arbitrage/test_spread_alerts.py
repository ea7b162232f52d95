"""Alerts appear when, and only when, the net edge stays over the threshold long enough.

The quotes are constructed by hand, so every expected alert is known before the run; the job
is the real pipeline (two Parquet captures -> asof_join -> cross_venue_spread -> filter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.engine.cli import main
from tickflow.kernels.arbitrage import cross_venue_spread

S = 1_000_000  # microseconds per second


def quotes_table(rows: list[tuple[int, str, float, float]], exchange: str) -> pa.Table:
    """(time us, symbol, bid, ask) rows as canonical ticks, sizes 2 (bid) and 3 (ask)."""
    n = len(rows)
    return pa.table({
        "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
        "symbol": [r[1] for r in rows], "exchange": [exchange] * n,
        "price": [(r[2] + r[3]) / 2 for r in rows], "best_bid": [r[2] for r in rows],
        "best_ask": [r[3] for r in rows], "best_bid_size": [2.0] * n,
        "best_ask_size": [3.0] * n, "last_size": pa.nulls(n, pa.float64()),
        "volume_24h": pa.nulls(n, pa.float64()), "sequence": list(range(n)),
    }, schema=CANONICAL_TICK_SCHEMA)


def constructed_market() -> tuple[pa.Table, pa.Table]:
    """Venue A quotes every 250 ms; venue B now and then, with known edges.

    Costs 10 + 10 bps, threshold 5 bps, min duration 1 s, max age 2 s:
    - BTC-USD: B's bid 100.50 from 10 s (A's ask 100.00: net 30 bps) -> episode from 10.1 s,
      alert at 11.1 s; B's quote is stale after 12 s. From 14 s the edge is back for only
      0.65 s (B fair again at 14.8 s) -> no alert.
    - ETH-USD: B shows a 100 bps edge, but its quote is from 0 s and A quotes from 3 s on:
      stale, never an alert.
    - SOL-USD: net edge 4 bps (below the threshold) all along, fresh -> no alert.
    """
    a_rows, b_rows = [], []
    for i in range(80):
        t = 100_000 + 250_000 * i
        a_rows.append((t, "BTC-USD", 99.99, 100.00))
        if t >= 3 * S:
            a_rows.append((t, "ETH-USD", 9.999, 10.00))
        a_rows.append((t, "SOL-USD", 49.99, 50.00))
    b_rows += [(0, "BTC-USD", 100.00, 100.02), (0, "ETH-USD", 10.10, 10.11)]
    b_rows += [(int(t * S), "SOL-USD", 50.12, 50.13) for t in np.arange(0, 21, 0.5)]
    b_rows += [(10 * S, "BTC-USD", 100.50, 100.52), (14 * S, "BTC-USD", 100.50, 100.52),
               (14_800_000, "BTC-USD", 100.00, 100.02)]
    b_rows.sort(key=lambda r: r[0])
    return quotes_table(a_rows, "binance"), quotes_table(b_rows, "kraken")


JOB = """
name: constructed-arbitrage
mode: arbitrage
sources:
  - {{id: venue_a, kind: parquet, path: {a}}}
  - {{id: venue_b, kind: parquet, path: {b}}}
steps:
  - {{id: qb, kernel: quote_time, from: venue_b}}
  - {{id: qa, kernel: quote_time, from: venue_a}}
  - id: aligned
    operator: asof_join
    params: {{left: venue_a, right: venue_b, direction: backward, tolerance: 30s,
             suffixes: ["", "_b"]}}
  - id: spread
    kernel: cross_venue_spread
    params: {{fee_a_bps: 10, fee_b_bps: 10, transfer_cost_bps: 0, threshold_bps: 5,
             min_duration_s: 1.0, max_age_s: 2.0}}
  - {{id: alerts, operator: filter, params: {{rule: arb_alert == 1}}}}
sinks:
  - {{kind: parquet, from: alerts, path: {out}/alerts.parquet}}
  - {{kind: parquet, from: aligned, path: {out}/aligned.parquet}}
  - {{kind: arbitrage_report, from: aligned, path: {out}/report.csv, thresholds_bps: [5, 50]}}
executor: {{morsel_rows: {morsel}, workers: 2}}
"""


@pytest.mark.parametrize("morsel", [61, 65536])
def test_alerts_exactly_when_the_net_edge_holds_over_the_threshold(tmp_path: Path, morsel: int):
    a, b = constructed_market()
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(a=tmp_path / "a.parquet", b=tmp_path / "b.parquet", out=tmp_path,
                              morsel=morsel))
    assert main([str(job), "--quiet"]) == 0
    alerts = pq.read_table(tmp_path / "alerts.parquet").to_pylist()
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["symbol"] == "BTC-USD"
    assert int(alert["timestamp"].timestamp() * S) == 11_100_000
    assert alert["arb_direction"] == "buy_a_sell_b"
    assert alert["net_edge_bps"] == pytest.approx(30.0)
    assert alert["edge_duration_s"] == pytest.approx(1.0)
    assert alert["top_size"] == 2.0  # min(A's ask size 3, B's bid size 2)
    assert alert["quote_age_a_ms"] == 0.0 and alert["quote_age_b_ms"] == pytest.approx(1100.0)

    rows = pq.read_table(tmp_path / "aligned.parquet").to_pandas()
    eth = rows[rows.symbol == "ETH-USD"]
    assert (eth.net_edge_bps > 50).all() and (eth.is_stale == 1).all()
    sol = rows[rows.symbol == "SOL-USD"]
    assert sol.net_edge_bps.between(3.0, 5.0).all() and (sol.is_stale == 0).all()
    btc = rows[rows.symbol == "BTC-USD"]
    t_us = btc.timestamp.map(lambda x: x.value // 1000)
    short = btc[(t_us >= 14 * S) & (t_us < 14_800_000)]
    assert len(short) == 3
    assert (short.net_edge_bps > 5).all() and short.edge_duration_s.max() < 1.0
    assert (short.arb_alert == 0).all()
    stale = btc[t_us > 12 * S + 100_000]
    assert (stale[stale.is_stale == 1].arb_alert == 0).all() and stale.is_stale.sum() > 0

    report = (tmp_path / "report.csv").read_text().splitlines()
    assert report[0].startswith("pair,symbol,threshold_bps,episodes")
    btc5 = next(line for line in report if line.startswith("binance/kraken,BTC-USD,5.0"))
    assert btc5.split(",")[3] == "2"  # the alerted episode and the short one
    assert (tmp_path / "report.png").stat().st_size > 5_000


def run_kernel(bid_a, ask_a, time_a, bid_b, ask_b, time_b, ts, *, threshold=0.0,
               min_duration_s=0.0, max_age_s=2.0, cost=0.0, key=None):
    n = len(ts)
    key = np.zeros(n, np.int64) if key is None else np.asarray(key, np.int64)
    f = lambda v: np.asarray(v, np.float64)  # noqa: E731
    size = np.ones(n)
    outs = [np.empty(n) for _ in range(3)] + [np.empty(n, np.int8)] + \
        [np.empty(n) for _ in range(3)] + [np.empty(n, np.int8), np.empty(n),
                                           np.empty(n, np.int8)]
    state = [np.zeros(4, np.int64), np.zeros(4, np.int8), np.zeros(4, np.int8)]
    cross_venue_spread(key, np.asarray(ts, np.int64), f(bid_a), f(ask_a), size, size, f(time_a),
                       f(bid_b), f(ask_b), size, size, f(time_b), *state, *outs, cost,
                       threshold, round(min_duration_s * S), round(max_age_s * S))
    names = ("ab", "ba", "net", "direction", "size", "age_a", "age_b", "stale", "duration",
             "alert")
    return dict(zip(names, outs, strict=True))


def test_edges_both_ways_net_of_costs():
    out = run_kernel([100.0, 101.0], [100.1, 101.1], [0, S], [100.5, 99.0], [100.6, 99.1],
                     [0, S], [0, S], cost=25.0)
    assert out["ab"][0] == pytest.approx((100.5 - 100.1) / 100.1 * 1e4 - 25)
    assert out["ba"][1] == pytest.approx((101.0 - 99.1) / 99.1 * 1e4 - 25)
    assert list(out["direction"]) == [1, 2]


def test_a_missing_or_stale_quote_never_alerts_and_ends_the_episode():
    ts = [0, S // 2, S, 3 * S, int(3.5 * S)]
    out = run_kernel([100.0] * 5, [100.0] * 5, ts, [101.0, 101.0, np.nan, 101.0, 101.0],
                     [101.1] * 5, [0, 0, S, 0, 3 * S], ts, min_duration_s=0.4)
    assert list(out["stale"]) == [0, 0, 1, 1, 0]
    assert list(out["alert"]) == [0, 1, 0, 0, 0]  # the fresh run after staleness restarts
    assert out["duration"][4] == 0.0


def test_keys_keep_their_own_episodes():
    ts = [0, 0, S, S]
    out = run_kernel([100.0] * 4, [100.0] * 4, ts, [101.0, 100.0, 101.0, 101.0], [101.1] * 4,
                     ts, ts, min_duration_s=1.0, key=[0, 1, 0, 1])
    assert list(out["alert"]) == [0, 0, 1, 0]


def test_params_are_checked():
    from tickflow.kernels.arbitrage import CrossVenueParams

    with pytest.raises(ValueError, match="greater than 0"):
        CrossVenueParams(max_age_s=0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        CrossVenueParams(fee_a_bps=-1)
