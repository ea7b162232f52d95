"""Volatility: realized and bipower variance, RiskMetrics, rolling std and Welford. The
family's rolling autocorrelation is in ``autocorrelation.py``; the rolling-sum walk that
realized and bipower variance share in ``rolling_sums.py``."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import ConfigDict
from pydantic import Field as PydanticField

from tickflow.kernels.averages import ring_moment_peak_state, rolling_moments
from tickflow.kernels.base import (
    Field,
    Params,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    moment_fields,
    ring_fields,
    window_args,
)
from tickflow.kernels.rolling_sums import SUM_OF_BIPOWER, SUM_OF_SQUARES, rolling_sum_walk


def _ring_moment_state(p: WindowParams) -> list[Field]:
    # one push per row (rolling_sum_walk): a row window's ring is sized by the key's rows
    return (ring_fields(initial_capacity(p.window), per_row=isinstance(p.window, int),
                        stub_ts=isinstance(p.window, int))
            + moment_fields())


def _window_args(p: WindowParams) -> tuple[int, int, int]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods


class RealizedVarParams(WindowParams):
    window: Window = PydanticField(20, description="rows (or a duration) of summed squared returns")


@kernel("realized_var", params=RealizedVarParams, inputs=("log_return",),
        outputs=("realized_var",), state=_ring_moment_state, args=_window_args,
        time_window=True, formula="sum of r^2 over the window")
@njit(nogil=True, cache=True)
def realized_var(key, ts, r, vals, tss, head, count, shift, s1, s2, since, last, run, out,
                 rows, span, min_periods):
    """Realized variance: the sum of squared returns over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time). A NaN return outputs NaN and leaves the window unchanged.

    State: a ring of r^2 with timestamps, and shifted running sums (periodically recomputed).

    >>> # r = 0.01, 0.02 with window 2 -> NaN, 0.0005
    """
    return rolling_sum_walk(key, ts, r, r, vals, tss, head, count, shift, s1, s2, since, last,
                            run, out, rows, span, min_periods, SUM_OF_SQUARES)


class BipowerVarParams(WindowParams):
    window: Window = PydanticField(20,
                                   description="rows (or a duration) of summed adjacent |return| "
                                               "products")


def _bipower_state(p: BipowerVarParams) -> list[Field]:
    return [Field("prev_abs"), *_ring_moment_state(p)]


@kernel("bipower_var", params=BipowerVarParams, inputs=("log_return",),
        outputs=("bipower_var",), state=_bipower_state, args=_window_args, time_window=True,
        formula="(pi / 2) sum |r_t| |r_{t-1}| over the pairs whose later element is in the window")
@njit(nogil=True, cache=True)
def bipower_var(key, ts, r, prev_abs, vals, tss, head, count, shift, s1, s2, since, last, run,
                out, rows, span, min_periods):
    """Bipower variation (Barndorff-Nielsen & Shephard 2004): (pi / 2) sum |r_t| |r_{t-1}|.

    A pair is two consecutive valid returns of a key; it belongs to the time and row of its
    later element. The window holds the last ``window`` pairs (rows) or the pairs whose later
    element has timestamp in (t - window, t] (time). Warm-up: NaN until the window holds
    ``window`` pairs (so the first value comes on the key's ``window + 1``-th valid return), or
    ``min_periods`` pairs for time windows. A NaN return outputs NaN and changes nothing; the
    key's first valid return outputs NaN (no pair yet).

    State: ``prev_abs`` (|r| of the last valid return), a ring of pair products with
    timestamps, and shifted running sums.

    >>> # r = 0.01, -0.02, 0.03 with window 2 -> NaN, NaN, (pi/2) * (0.0002 + 0.0006)
    """
    return rolling_sum_walk(key, ts, r, prev_abs, vals, tss, head, count, shift, s1, s2, since,
                            last, run, out, rows, span, min_periods, SUM_OF_BIPOWER)


class RiskMetricsParams(Params):
    """riskmetrics_vol: the decay ``lambda`` (0 <= lambda < 1), written ``lambda`` in YAML."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    lambda_: float = PydanticField(0.94, alias="lambda", ge=0.0, lt=1.0,
                                   description="decay factor of the variance EWMA (RiskMetrics: "
                                               "0.94)")


@kernel("riskmetrics_vol", params=RiskMetricsParams, inputs=("log_return",),
        outputs=("riskmetrics_vol",), state=lambda p: [Field("s2")],
        args=lambda p: (p.lambda_,),
        formula="s2_0 = r_0^2; s2_t = lambda s2_{t-1} + (1 - lambda) r_t^2; sqrt(s2_t)")
@njit(nogil=True, cache=True)
def riskmetrics_vol(key, ts, r, s2, out, lam):
    """RiskMetrics (J.P. Morgan 1996) exponentially weighted volatility.

    s2_0 = r_0^2 on the key's first valid return; s2_t = lambda s2_{t-1} + (1 - lambda) r_t^2;
    output sqrt(s2_t) from the first valid return on. A NaN return outputs NaN and leaves s2
    unchanged.

    State: ``s2`` per key (NaN until seeded).

    >>> # r = 0.01, 0.0 with lambda 0.5 -> 0.01, sqrt(0.00005)
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if np.isnan(s2[k]):
            s2[k] = v * v
        else:
            s2[k] = lam * s2[k] + (1.0 - lam) * v * v
        out[i] = np.sqrt(s2[k])
    return key.shape[0]


class RollingStdParams(WindowParams):
    window: Window = PydanticField(20,
                                   description="rows (or a duration) of the rolling standard "
                                               "deviation")


@kernel("rolling_std", params=RollingStdParams, inputs=("log_return",),
        outputs=("{input}_std{window}",), state=ring_moment_peak_state, args=_window_args,
        time_window=True, formula="sample std (ddof 1) over the window")
@njit(nogil=True, cache=True)
def rolling_std(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run, peak,
                out, rows, span, min_periods):
    """Rolling sample standard deviation (ddof 1) over a row or time window.

    Warm-up: NaN until the window holds ``window`` valid values (rows) or ``min_periods``
    (time); a one-value window is NaN (ddof 1); a constant window is exactly 0. A NaN input
    outputs NaN and leaves the window unchanged.

    State: a ring of the window's values, shifted running sums and their peak
    (``averages.rolling_moments``).

    >>> # x = 1, 2, 4 with window 3 -> NaN, NaN, 1.5275...
    """
    scratch = np.empty(key.shape[0])
    return rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                           peak, scratch, out, rows, span, min_periods, 1)


@kernel("welford_mean_var", inputs=("price",), outputs=("mean", "variance", "stddev"),
        state=lambda p: [Field("n", dtype=np.int64, fill=0), Field("mean", fill=0.0),
                         Field("m2", fill=0.0)],
        formula="expanding mean, sample variance and std by Welford's update")
@njit(nogil=True, cache=True)
def welford_mean_var(key, ts, x, n, mean, m2, out_mean, out_var, out_std):
    """Expanding mean, sample variance (ddof 1) and std of the key's history (Welford 1962).

    n += 1; d = x - mean; mean += d / n; M2 += d (x - mean); variance = M2 / (n - 1).
    The mean is output from the first valid value, variance and std from the second. A NaN
    input outputs NaN in all three and leaves the state unchanged.

    State: ``n`` (count), ``mean`` and ``m2`` per key.

    >>> # x = 1, 2, 3 -> mean 1, 1.5, 2; variance NaN, 0.5, 1
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out_mean[i] = np.nan
            out_var[i] = np.nan
            out_std[i] = np.nan
            continue
        n[k] += 1
        d = v - mean[k]
        mean[k] += d / n[k]
        m2[k] += d * (v - mean[k])
        out_mean[i] = mean[k]
        if n[k] < 2:
            out_var[i] = np.nan
            out_std[i] = np.nan
        else:
            var = m2[k] / (n[k] - 1)
            if var < 0.0:
                var = 0.0
            out_var[i] = var
            out_std[i] = np.sqrt(var)
    return key.shape[0]
