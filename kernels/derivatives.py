"""Derivatives and FX carry: funding, basis, carry edge, fair perp price, forward points, CIP
basis, carry signal, pairs spread and the Kalman hedge ratio.

Optional inputs (``funding_apr`` of ``cash_and_carry_edge``, ``volatility`` of
``carry_signal``) are declared in ``optional_inputs`` but are still positional inputs of the
numba function: the job must provide the column (remap it with ``inputs:``). A NaN in an
optional input follows the NaN policy like any other input: the row outputs NaN (a missing
funding rate is unknown, not zero).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField

from tickflow.kernels.base import Field, Params, kernel

# --------------------------------------------------------------------------- funding and basis


class FundingAprParams(Params):
    """funding_apr: hours between funding events (> 0)."""

    funding_freq_hours: float = PydanticField(8.0, gt=0.0,
                                              description="hours between funding payments (8 on "
                                                          "most venues)")


@kernel("funding_apr", params=FundingAprParams, inputs=("funding_rate",),
        outputs=("funding_apr",), args=lambda p: (float(p.funding_freq_hours),),
        formula="rate * (24 / freq_hours) * 365")
@njit(nogil=True, cache=True)
def funding_apr(key, ts, rate, out, freq_hours):
    """Annualised funding rate: rate * (24 / funding_freq_hours) * 365.

    Stateless; output from the first row. A NaN rate outputs NaN.

    >>> # rate 0.0001 every 8 h -> 0.0001 * 3 * 365 = 0.1095
    """
    scale = (24.0 / freq_hours) * 365.0
    for i in range(key.shape[0]):
        out[i] = rate[i] * scale
    return key.shape[0]


class BasisParams(Params):
    """basis_annualized: days to expiry T_days (> 0) used to annualise the basis."""

    T_days: float = PydanticField(90.0, gt=0.0, description="days to the future's expiry")


@kernel("basis_annualized", params=BasisParams, inputs=("perp_price", "spot_price"),
        outputs=("basis_apr",), args=lambda p: (float(p.T_days),),
        formula="(perp / spot - 1) * 365 / T_days")
@njit(nogil=True, cache=True)
def basis_annualized(key, ts, perp, spot, out, t_days):
    """Annualised basis of a perpetual (or future) over spot: (perp / spot - 1) * 365 / T_days.

    Stateless. A NaN input, or a spot of 0, outputs NaN.

    >>> # perp 101, spot 100, T_days 365 -> 0.01
    """
    for i in range(key.shape[0]):
        f = perp[i]
        s = spot[i]
        if np.isnan(f) or np.isnan(s) or s == 0.0:
            out[i] = np.nan
        else:
            out[i] = (f / s - 1.0) * 365.0 / t_days
    return key.shape[0]


class CarryEdgeParams(Params):
    """cash_and_carry_edge: fee per leg in basis points (>= 0)."""

    fee_bps: float = PydanticField(10.0, ge=0.0,
                                   description="round-trip trading cost in basis points")


@kernel("cash_and_carry_edge", params=CarryEdgeParams, inputs=("basis_apr", "funding_apr"),
        outputs=("carry_edge_bps",), optional_inputs=("funding_apr",),
        args=lambda p: (float(p.fee_bps),),
        formula="(basis_apr + funding_apr) * 10,000 - 2 * fee_bps")
@njit(nogil=True, cache=True)
def cash_and_carry_edge(key, ts, basis, funding, out, fee_bps):
    """Cash-and-carry edge in bps: (basis_apr + funding_apr) * 10,000 - 2 * fee_bps.

    Stateless. ``funding_apr`` is declared optional but must be given as a column; a NaN
    ``funding_apr`` (like a NaN ``basis_apr``) outputs NaN: it is not read as 0.

    >>> # basis 0.05, funding 0.01, fee 10 -> 600 - 20 = 580
    """
    for i in range(key.shape[0]):
        out[i] = (basis[i] + funding[i]) * 10_000.0 - 2.0 * fee_bps
    return key.shape[0]


@kernel("funding_cost", inputs=("position", "price", "funding_rate"),
        outputs=("funding_cost", "funding_cost_cum"),
        state=lambda p: [Field("total", fill=0.0)],
        formula="position * price * funding_rate per funding event, and its running sum per key")
@njit(nogil=True, cache=True)
def funding_cost(key, ts, position, price, rate, total, out_cost, out_cum):
    """Funding paid on a position: position * price * funding_rate, with its running sum.

    Every row is a funding event. A NaN in any input outputs NaN in both columns and leaves
    the sum unchanged. Output from the first row.

    State: ``total`` per key, the sum of the key's funding costs, starting at 0.

    >>> # (2, 100, 0.001), (2, 110, -0.001) -> cost 0.2, -0.22; cum 0.2, -0.02
    """
    for i in range(key.shape[0]):
        k = key[i]
        c = position[i] * price[i] * rate[i]
        if np.isnan(c):
            out_cost[i] = np.nan
            out_cum[i] = np.nan
            continue
        total[k] += c
        out_cost[i] = c
        out_cum[i] = total[k]
    return key.shape[0]


@kernel("open_interest_delta", inputs=("open_interest",), outputs=("oi_delta",),
        state=lambda p: [Field("prev")],
        formula="OI_t - OI_{t-1}, NaN on a key's first row")
@njit(nogil=True, cache=True)
def open_interest_delta(key, ts, oi, prev, out):
    """Change in open interest against the key's previous valid value: OI_t - OI_{t-1}.

    Warm-up: NaN on the first valid row of a key. A NaN input outputs NaN and leaves ``prev``
    unchanged.

    State: ``prev`` per key, the last valid open interest (NaN before the first).

    >>> # 1000, 1200, 1100 -> NaN, 200, -100
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = oi[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        out[i] = v - prev[k]  # NaN while prev is NaN
        prev[k] = v
    return key.shape[0]


@kernel("perp_fair_price", params=FundingAprParams,
        inputs=("spot_price", "funding_rate", "hours_to_funding"), outputs=("perp_fair",),
        args=lambda p: (float(p.funding_freq_hours),),
        formula="spot * (1 + funding_rate * hours_to_funding / funding_freq_hours)")
@njit(nogil=True, cache=True)
def perp_fair_price(key, ts, spot, rate, hours, out, freq_hours):
    """Fair perpetual price: spot * (1 + funding_rate * hours_to_funding / funding_freq_hours).

    ``funding_freq_hours`` is a parameter (default 8). Stateless; a NaN input outputs NaN.

    >>> # spot 100, rate 0.001, 4 h of 8 -> 100.05
    """
    for i in range(key.shape[0]):
        out[i] = spot[i] * (1.0 + rate[i] * hours[i] / freq_hours)
    return key.shape[0]


# --------------------------------------------------------------------------- FX carry


class TenorParams(Params):
    """forward_points / cip_basis: tenor in years (> 0)."""

    T_years: float = PydanticField(1.0, gt=0.0, description="tenor of the forward, in years")


@kernel("forward_points", params=TenorParams, inputs=("spot", "r_dom", "r_for"),
        outputs=("forward_points",), args=lambda p: (float(p.T_years),),
        formula="S * exp((r_dom - r_for) * T) - S")
@njit(nogil=True, cache=True)
def forward_points(key, ts, spot, r_dom, r_for, out, t_years):
    """Covered-interest forward points (continuous compounding): S * exp((r_dom - r_for) T) - S.

    Stateless; a NaN input outputs NaN.

    >>> # S 1.1, r_dom 0.05, r_for 0.03, T 1 -> 1.1 * (e^0.02 - 1) = 0.022222...
    """
    for i in range(key.shape[0]):
        s = spot[i]
        out[i] = s * np.exp((r_dom[i] - r_for[i]) * t_years) - s
    return key.shape[0]


@kernel("cip_basis", params=TenorParams, inputs=("spot", "forward", "r_dom", "r_for"),
        outputs=("cip_basis",), args=lambda p: (float(p.T_years),),
        formula="ln(F / S) / T - (r_dom - r_for)")
@njit(nogil=True, cache=True)
def cip_basis(key, ts, spot, fwd, r_dom, r_for, out, t_years):
    """Deviation from covered interest parity: ln(F / S) / T - (r_dom - r_for).

    Stateless. A NaN input, a spot of 0, or F / S <= 0 (no finite log) outputs NaN.

    >>> # S 1.1, F 1.1 e^0.02, r_dom 0.05, r_for 0.03 -> 0
    """
    for i in range(key.shape[0]):
        s = spot[i]
        f = fwd[i]
        res = np.nan
        if s != 0.0:
            ratio = f / s
            if ratio > 0.0 and np.isfinite(ratio):
                res = np.log(ratio) / t_years - (r_dom[i] - r_for[i])
        out[i] = res
    return key.shape[0]


class CarrySignalParams(Params):
    """carry_signal: weight of the volatility penalty (>= 0)."""

    risk_adj: float = PydanticField(1.0, ge=0.0,
                                    description="how much the edge is divided by its volatility "
                                                "(0: raw edge)")


@kernel("carry_signal", params=CarrySignalParams, inputs=("r_dom", "r_for", "volatility"),
        outputs=("carry_signal",), optional_inputs=("volatility",),
        args=lambda p: (float(p.risk_adj),),
        formula="r_dom - r_for, minus risk_adj * volatility when given")
@njit(nogil=True, cache=True)
def carry_signal(key, ts, r_dom, r_for, vol, out, risk_adj):
    """Risk-adjusted carry: r_dom - r_for - risk_adj * volatility.

    Stateless. ``volatility`` is declared optional but must be given as a column; a NaN
    volatility outputs NaN like any NaN input (it is not read as 0).

    >>> # r_dom 0.05, r_for 0.01, vol 0.1, risk_adj 0.2 -> 0.02
    """
    for i in range(key.shape[0]):
        out[i] = r_dom[i] - r_for[i] - risk_adj * vol[i]
    return key.shape[0]


# --------------------------------------------------------------------------- pairs


class PairsSpreadParams(Params):
    """pairs_spread: the hedge ratio beta (required, a finite number)."""

    beta: float = PydanticField(allow_inf_nan=False,
                                description="hedge ratio: spread = a - beta * b")


@kernel("pairs_spread", params=PairsSpreadParams, inputs=("price_a", "price_b"),
        outputs=("spread",), args=lambda p: (float(p.beta),),
        formula="p_a - beta p_b, with the two legs aligned by ASOF join")
@njit(nogil=True, cache=True)
def pairs_spread(key, ts, price_a, price_b, out, beta):
    """Pairs spread p_a - beta * p_b on legs already aligned (e.g. by ``asof_join``).

    Stateless; a NaN leg outputs NaN.

    >>> # p_a 100, p_b 50, beta 1.5 -> 25
    """
    for i in range(key.shape[0]):
        out[i] = price_a[i] - beta * price_b[i]
    return key.shape[0]


class KalmanHedgeParams(Params):
    """kalman_hedge_ratio: beta drift 0 < delta < 1 and observation noise variance r > 0."""

    delta: float = PydanticField(1e-4, gt=0.0, lt=1.0,
                                 description="how fast the hedge ratio may drift (state noise "
                                             "share)")
    r: float = PydanticField(1e-3, gt=0.0, description="observation noise variance of the spread")


@kernel("kalman_hedge_ratio", params=KalmanHedgeParams, inputs=("price_a", "price_b"),
        outputs=("hedge_ratio", "spread"),
        state=lambda p: [Field("beta"), Field("var")],
        args=lambda p: (p.delta / (1.0 - p.delta), float(p.r)),
        formula="Kalman regression of p_a on p_b with random-walk beta")
@njit(nogil=True, cache=True)
def kalman_hedge_ratio(key, ts, price_a, price_b, beta, var, out_beta, out_spread, vw, r):
    """Kalman regression of y = p_a on x = p_b with a random-walk slope (no intercept).

    Model: y_t = beta_t x_t + e_t, e_t ~ N(0, r); beta_t = beta_{t-1} + w_t,
    w_t ~ N(0, Vw) with Vw = delta / (1 - delta) (as in Chan, "Algorithmic Trading", 2013).

    Seed on the first row of a key with finite legs and x != 0: beta = y / x, P = 1;
    outputs hedge_ratio = beta and spread NaN (there is no earlier estimate to predict with).
    Then on each row::

        P = P + Vw                  # predict
        e = y - beta * x            # spread: the one-step prediction error
        Q = x * x * P + r
        K = P * x / Q
        beta = beta + K * e         # hedge_ratio: the updated slope
        P = P - K * x * P

    A NaN leg outputs NaN in both columns and leaves the state unchanged (as does x = 0
    before the key is seeded). Q >= r > 0, so there is no division by zero.

    State: ``beta`` and its variance ``var`` (= P) per key, NaN before seeding.

    >>> # (y, x) = (200, 100) seeds beta 2; (202, 100) -> spread 2, hedge_ratio ~2.02
    """
    for i in range(key.shape[0]):
        k = key[i]
        y = price_a[i]
        x = price_b[i]
        if np.isnan(y) or np.isnan(x):
            out_beta[i] = np.nan
            out_spread[i] = np.nan
            continue
        if np.isnan(beta[k]):
            if x == 0.0:
                out_beta[i] = np.nan
                out_spread[i] = np.nan
                continue
            beta[k] = y / x
            var[k] = 1.0
            out_beta[i] = beta[k]
            out_spread[i] = np.nan
            continue
        p = var[k] + vw
        e = y - beta[k] * x
        q = x * x * p + r
        gain = p * x / q
        b = beta[k] + gain * e
        var[k] = p - gain * x * p
        beta[k] = b
        out_beta[i] = b
        out_spread[i] = e
    return key.shape[0]
