"""Execution analytics: implementation shortfall, arrival-price impact, triangular arbitrage."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import Params, kernel

TRI_ROUTES = ("none", "A>B>C>A", "A>C>B>A")
"""Labels of the int8 ``tri_route`` codes 0, 1, 2."""


@njit(inline="always", nogil=True)
def signed_bps(price, reference, side):
    """side * (price - reference) / reference * 10,000; NaN when reference is 0 or NaN."""
    if reference == 0.0 or np.isnan(reference):
        return np.nan
    return side * (price - reference) / reference * 10_000.0


@kernel("implementation_shortfall", inputs=("exec_price", "arrival_price", "side"),
        outputs=("is_bps",),
        formula="side * (exec - arrival) / arrival * 10,000 (a cost is positive)")
@njit(nogil=True, cache=True)
def implementation_shortfall(key, ts, exec_price, arrival_price, side, out):
    """Implementation shortfall in bps: side * (exec - arrival) / arrival * 10,000.

    ``side`` is +1 for a buy and -1 for a sell, so a cost is positive. Stateless. A NaN
    input, or an arrival price of 0, outputs NaN.

    >>> # buy at 100.5 with arrival 100 -> 50 bps; sell at 100.5 -> -50 bps
    """
    for i in range(key.shape[0]):
        out[i] = signed_bps(exec_price[i], arrival_price[i], side[i])
    return key.shape[0]


@kernel("arrival_price_impact", inputs=("exec_price", "arrival_mid", "side"),
        outputs=("arrival_impact_bps",),
        formula="side * (exec - arrival_mid) / arrival_mid * 10,000")
@njit(nogil=True, cache=True)
def arrival_price_impact(key, ts, exec_price, arrival_mid, side, out):
    """Impact against the arrival midprice in bps: side * (exec - mid) / mid * 10,000.

    ``side`` is +1 for a buy and -1 for a sell. Stateless. A NaN input, or a mid of 0,
    outputs NaN.

    >>> # sell at 99.9 with arrival mid 100 -> 10 bps
    """
    for i in range(key.shape[0]):
        out[i] = signed_bps(exec_price[i], arrival_mid[i], side[i])
    return key.shape[0]


class TriangularParams(Params):
    """triangular_arbitrage: fee per leg in basis points (>= 0)."""

    fee_bps: float = PydanticField(10.0, ge=0.0, description="fee per leg in basis points")


@kernel("triangular_arbitrage", params=TriangularParams,
        inputs=("rate_ab", "rate_bc", "rate_ac"), outputs=("tri_edge_bps", "tri_route"),
        output_dtypes=(np.float64, np.int8), args=lambda p: (float(p.fee_bps),),
        extra={"categories": {"tri_route": list(TRI_ROUTES)}},
        formula="edge = max(fwd, rev) * 10,000 - 3 * fee_bps with fwd = ab * bc / ac - 1, "
                "rev = ac / (ab * bc) - 1; route of the better loop, none when edge <= 0")
@njit(nogil=True, cache=True)
def triangular_arbitrage(key, ts, rate_ab, rate_bc, rate_ac, out_edge, out_route, fee_bps):
    """Triangular arbitrage edge of the better of the two loops, net of 3 legs' fees.

    fwd = rate_ab * rate_bc / rate_ac - 1 (A>B>C>A); rev = rate_ac / (rate_ab * rate_bc) - 1
    (A>C>B>A); tri_edge_bps = max(fwd, rev) * 10,000 - 3 * fee_bps. ``tri_route`` is an
    int8 code: 1 = A>B>C>A when fwd is the larger, 2 = A>C>B>A when rev is, 0 = none when
    edge <= 0 (labels in ``extra["categories"]``). Stateless. A NaN input, or a zero
    rate_ac or rate_ab * rate_bc, outputs edge NaN and route 0.

    >>> # ab 2, bc 3, ac 5.94, fee 0 -> fwd = 6 / 5.94 - 1 = 101.01 bps, route 1
    """
    for i in range(key.shape[0]):
        ab = rate_ab[i]
        bc = rate_bc[i]
        ac = rate_ac[i]
        prod = ab * bc
        if np.isnan(prod) or np.isnan(ac) or ac == 0.0 or prod == 0.0:
            out_edge[i] = np.nan
            out_route[i] = 0
            continue
        fwd = prod / ac - 1.0
        rev = ac / prod - 1.0
        best = fwd if fwd >= rev else rev
        edge = best * 10_000.0 - 3.0 * fee_bps
        if not np.isfinite(edge):  # overflow of a product of extreme rates
            out_edge[i] = np.nan
            out_route[i] = 0
            continue
        out_edge[i] = edge
        if not edge > 0.0:
            out_route[i] = 0
        elif fwd >= rev:
            out_route[i] = 1
        else:
            out_route[i] = 2
    return key.shape[0]
