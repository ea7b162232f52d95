"""Cross-venue arbitrage: the executable spread between two venues' top of book, net of costs.

The rows are one venue's quotes (venue A) with the other venue's latest quote (venue B)
attached by an ``asof_join`` (suffix ``_b``), keyed by symbol; ``quote_time`` columns carry each
quote's own time so that the age of either side is known at the row's time.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import Field, Params, kernel

ARB_DIRECTIONS = ("none", "buy_a_sell_b", "buy_b_sell_a")


@kernel("quote_time", inputs=(), outputs=("quote_time",),
        formula="the row's timestamp in epoch microseconds (float64)")
@njit(nogil=True, cache=True)
def quote_time(key, ts, out):
    """Quote time: the row's own timestamp as epoch microseconds (float64).

    Why: an ``asof_join`` keeps only the left stream's time; computing ``quote_time`` on the
    right stream first carries the right quote's time into the joined rows, so its age can be
    measured (``cross_venue_spread``). Stateless, no warm-up.

    >>> # rows at 1.5 s and 2 s after the epoch -> 1_500_000.0, 2_000_000.0
    """
    for i in range(key.shape[0]):
        out[i] = float(ts[i])
    return key.shape[0]


class CrossVenueParams(Params):
    """cross_venue_spread: taker fees, transfer cost, alert threshold, duration and max age."""

    fee_a_bps: float = PydanticField(10.0, ge=0.0, description="venue A taker fee")
    fee_b_bps: float = PydanticField(10.0, ge=0.0, description="venue B taker fee")
    transfer_cost_bps: float = PydanticField(0.0, ge=0.0,
                                             description="transfer and latency cost per trade")
    threshold_bps: float = PydanticField(0.0, ge=0.0,
                                         description="net edge an alert needs (strictly above)")
    min_duration_s: float = PydanticField(1.0, ge=0.0, description="how long the net edge must "
                                                                  "stay above the threshold")
    max_age_s: float = PydanticField(2.0, gt=0.0, description="a quote older than this is "
                                                             "stale and never alerts")


@kernel("cross_venue_spread", params=CrossVenueParams,
        inputs=("best_bid", "best_ask", "best_bid_size", "best_ask_size", "quote_time",
                "best_bid_b", "best_ask_b", "best_bid_size_b", "best_ask_size_b",
                "quote_time_b"),
        outputs=("edge_ab_bps", "edge_ba_bps", "net_edge_bps", "arb_direction", "top_size",
                 "quote_age_a_ms", "quote_age_b_ms", "is_stale", "edge_duration_s",
                 "arb_alert"),
        output_dtypes=(np.float64, np.float64, np.float64, np.int8, np.float64, np.float64,
                       np.float64, np.int8, np.float64, np.int8),
        state=lambda p: [Field("episode_start", (), np.int64, 0),
                         Field("episode_direction", (), np.int8, 0),
                         Field("episode_alerted", (), np.int8, 0)],
        args=lambda p: (float(p.fee_a_bps + p.fee_b_bps + p.transfer_cost_bps),
                        float(p.threshold_bps), round(p.min_duration_s * 1e6),
                        round(p.max_age_s * 1e6)),
        extra={"categories": {"arb_direction": list(ARB_DIRECTIONS)}},
        formula="edge_ab = (bid_b - ask_a) / ask_a * 10,000 - fee_a - fee_b - transfer; "
                "edge_ba likewise; alert once net edge > threshold for min_duration_s on "
                "quotes no older than max_age_s")
@njit(nogil=True, cache=True)
def cross_venue_spread(key, ts, bid_a, ask_a, bid_size_a, ask_size_a, time_a, bid_b, ask_b,
                       bid_size_b, ask_size_b, time_b, episode_start, episode_direction,
                       episode_alerted, out_ab, out_ba, out_net, out_dir, out_size, out_age_a,
                       out_age_b, out_stale, out_duration, out_alert, cost_bps, threshold_bps,
                       min_duration_us, max_age_us):
    """Executable cross-venue spread, net of costs, with a duration-gated alert.

    edge_ab_bps = (bid_b - ask_a) / ask_a * 10,000 - cost (buy at A's ask, sell at B's bid);
    edge_ba_bps = (bid_a - ask_b) / ask_b * 10,000 - cost, with cost = fee_a_bps + fee_b_bps +
    transfer_cost_bps. net_edge_bps = the larger; ``arb_direction`` its int8 code (1
    buy_a_sell_b, 2 buy_b_sell_a, 0 none when net <= 0); ``top_size`` = min(ask size at the
    buying venue, bid size at the selling venue), in base units. ``quote_age_*_ms`` = t -
    quote time. A row is stale (``is_stale`` 1) when a quote is missing (NaN) or older than
    max_age_s; its edges are still reported but it never counts towards an alert.

    An episode starts on the first fresh row whose net edge > threshold_bps and lasts while
    the rows stay fresh, above the threshold and in the same direction; ``edge_duration_s`` =
    t - its start (0 outside one). ``arb_alert`` is 1 on the first row of an episode whose
    duration >= min_duration_s, once per episode. State per key: ``episode_start`` (us),
    ``episode_direction`` (0: no episode) and ``episode_alerted``. Rows are evaluated when
    venue A quotes; venue B's quote is the one as of that time.

    >>> # ask_a 100, bid_b 100.5, costs 20 bps -> edge_ab = 50 - 20 = 30 bps, direction 1
    """
    for i in range(key.shape[0]):
        k = key[i]
        t = ts[i]
        ab = (bid_b[i] - ask_a[i]) / ask_a[i] * 10_000.0 - cost_bps
        ba = (bid_a[i] - ask_b[i]) / ask_b[i] * 10_000.0 - cost_bps
        out_ab[i] = ab
        out_ba[i] = ba
        age_a = t - time_a[i]
        age_b = t - time_b[i]
        out_age_a[i] = age_a / 1000.0
        out_age_b[i] = age_b / 1000.0
        direction = 0
        if ab >= ba:
            net = ab
            size = min(ask_size_a[i], bid_size_b[i])
            if ab > 0.0:
                direction = 1
        else:
            net = ba
            size = min(ask_size_b[i], bid_size_a[i])
            if ba > 0.0:
                direction = 2
        if np.isnan(ab) or np.isnan(ba):
            net = np.nan
            size = np.nan
            direction = 0
        out_net[i] = net
        out_size[i] = size
        out_dir[i] = direction
        stale = not (age_a <= max_age_us and age_b <= max_age_us) or np.isnan(net)
        out_stale[i] = 1 if stale else 0
        out_alert[i] = 0
        if stale or not net > threshold_bps:
            episode_direction[k] = 0
            episode_alerted[k] = 0
            out_duration[i] = 0.0
            continue
        if episode_direction[k] != direction:  # a new episode (or the other way round)
            episode_direction[k] = direction
            episode_start[k] = t
            episode_alerted[k] = 0
        held = t - episode_start[k]
        out_duration[i] = held / 1e6
        if held >= min_duration_us and episode_alerted[k] == 0:
            out_alert[i] = 1
            episode_alerted[k] = 1
    return key.shape[0]
