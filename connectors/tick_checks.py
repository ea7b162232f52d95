"""The collector's tick checks, for one tick dict at a time.

Why: the collector writes ticks one frame at a time, long before any job reads them. A price
at or below zero or a crossed quote (bid above ask) written there poisons every later run, so
the collector checks prices and quotes as a job's quality stage does and keeps such ticks as dead
letters instead, under reasons of its own that say which check failed.
Lateness is not checked here: a collector's timestamps are the venue's own, and a job decides
how late is too late.
"""

from __future__ import annotations

import math
from typing import Any

NAN_PRICE, NON_POSITIVE_PRICE, CROSSED_QUOTE = "nan_price", "non_positive_price", "crossed_quote"


def tick_problem(tick: dict[str, Any]) -> str | None:
    """The first tick-quality reason that applies to ``tick``, or None when it is usable.

    >>> tick_problem({"price": 0.0}), tick_problem({"price": 2.0, "best_bid": 3.0,
    ...                                              "best_ask": 1.0})
    ('non_positive_price', 'crossed_quote')
    """
    price = tick.get("price")
    if price is None or (isinstance(price, float) and math.isnan(price)):
        return NAN_PRICE
    if price <= 0:
        return NON_POSITIVE_PRICE
    bid, ask = tick.get("best_bid"), tick.get("best_ask")
    if bid is not None and ask is not None and bid > ask:  # NaN compares False: not crossed
        return CROSSED_QUOTE
    return None
