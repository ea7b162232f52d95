"""Technical indicators: MACD, Wilder's RSI (as TA-Lib) and Bollinger bands."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import ValidationInfo, field_validator, model_validator

from tickflow.kernels.averages import rolling_moments
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


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, found {value!r}")
    return value


# --------------------------------------------------------------------------- MACD


class MacdParams(Params):
    """macd: EMA spans fast (12) < slow (26), and the signal span (9)."""

    fast: int = 12
    slow: int = 26
    signal: int = 9

    @field_validator("fast", "slow", "signal", mode="before")
    @classmethod
    def _not_bool(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be an integer >= 1, found {value!r}")
        return value

    @field_validator("fast", "slow", "signal")
    @classmethod
    def _at_least_one(cls, value: int, info: ValidationInfo) -> int:
        return _positive_int(info.field_name, value)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MacdParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast must be < slow, found fast={self.fast}, slow={self.slow}")
        return self


def _macd_args(p: MacdParams) -> tuple[float, float, float]:
    return 2.0 / (p.fast + 1.0), 2.0 / (p.slow + 1.0), 2.0 / (p.signal + 1.0)


@kernel("macd", params=MacdParams, inputs=("price",),
        outputs=("macd", "macd_signal", "macd_hist"),
        state=lambda p: [Field("m_fast"), Field("m_slow"), Field("m_signal")],
        args=_macd_args,
        formula="macd = EMA(fast) - EMA(slow); signal = EMA(signal) of macd; hist = macd - signal")
@njit(nogil=True, cache=True)
def macd(key, ts, x, m_fast, m_slow, m_signal, out_macd, out_signal, out_hist,
         alpha_fast, alpha_slow, alpha_signal):
    """MACD (Appel): macd = EMA_span(fast) - EMA_span(slow) of the price, macd_signal =
    EMA_span(signal) of macd, macd_hist = macd - macd_signal.

    Every EMA is seeded with its first value (EMA family), so the first row of a key gives
    macd = signal = hist = 0 and outputs start there (TA-Lib's MACD seeds with SMAs instead).
    NaN policy: a NaN price outputs NaN in all three columns and leaves the state unchanged.
    State: the three EMAs per key, NaN until the first valid price.

    >>> # any first price -> macd 0.0, macd_signal 0.0, macd_hist 0.0
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out_macd[i] = np.nan
            out_signal[i] = np.nan
            out_hist[i] = np.nan
            continue
        if np.isnan(m_fast[k]):
            m_fast[k] = v
            m_slow[k] = v
        else:
            m_fast[k] = alpha_fast * v + (1.0 - alpha_fast) * m_fast[k]
            m_slow[k] = alpha_slow * v + (1.0 - alpha_slow) * m_slow[k]
        line = m_fast[k] - m_slow[k]
        if np.isnan(m_signal[k]):
            m_signal[k] = line
        else:
            m_signal[k] = alpha_signal * line + (1.0 - alpha_signal) * m_signal[k]
        out_macd[i] = line
        out_signal[i] = m_signal[k]
        out_hist[i] = line - m_signal[k]
    return key.shape[0]


# --------------------------------------------------------------------------- RSI


class RsiParams(Params):
    """rsi: Wilder's period (14), >= 2 as in TA-Lib."""

    period: int = 14

    @field_validator("period", mode="before")
    @classmethod
    def _not_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"period must be an integer >= 2, found {value!r}")
        return value

    @field_validator("period")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"period must be an integer >= 2, found {value!r}")
        return value


@kernel("rsi", params=RsiParams, inputs=("price",), outputs=("rsi",),
        state=lambda p: [Field("prev"), Field("changes", (), np.int64, 0),
                         Field("avg_gain", (), np.float64, 0.0),
                         Field("avg_loss", (), np.float64, 0.0)],
        args=lambda p: (p.period, 1.0 / p.period),
        formula="Wilder's RSI as TA-Lib: 100 * avg_gain / (avg_gain + avg_loss)")
@njit(nogil=True, cache=True)
def rsi(key, ts, x, prev, changes, avg_gain, avg_loss, out, period, inv_period):
    """Wilder's relative strength index, step for step as TA-Lib's ``RSI``.

    The first average gain/loss is the simple mean of the first ``period`` changes; after that
    avg = (avg * (period - 1) + change) / period. rsi = 100 * avg_gain / (avg_gain + avg_loss),
    and 0 when both averages are 0. The division by ``period`` is a multiplication by
    ``1 / period`` and the operations run in TA-Lib's order: the output then equals TA-Lib's
    (C library 0.8.1) bit for bit, where a plain division differs in the last bit now and then.
    Warm-up: NaN for the first ``period`` valid rows of a key (row ``period`` has ``period``
    changes). NaN policy: a NaN price outputs NaN and leaves the state unchanged; the next change
    is taken from the last valid price.
    State: ``prev`` (last valid price), ``changes`` (count, capped at ``period``), and
    ``avg_gain``/``avg_loss`` (running sums until ``period`` changes, then Wilder averages).

    >>> # period 2, prices 1, 2, 1 -> NaN, NaN, 100 * 0.5 / (0.5 + 0.5) = 50.0
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        if np.isnan(prev[k]):
            prev[k] = v
            out[i] = np.nan
            continue
        change = v - prev[k]
        prev[k] = v
        if changes[k] < period:
            if change < 0.0:
                avg_loss[k] -= change
            else:
                avg_gain[k] += change
            changes[k] += 1
            if changes[k] < period:
                out[i] = np.nan
                continue
        else:
            avg_loss[k] *= period - 1
            avg_gain[k] *= period - 1
            if change < 0.0:
                avg_loss[k] -= change
            else:
                avg_gain[k] += change
        avg_loss[k] *= inv_period
        avg_gain[k] *= inv_period
        total = avg_gain[k] + avg_loss[k]
        if total == 0.0:
            out[i] = 0.0
        else:
            out[i] = 100.0 * (avg_gain[k] / total)
    return key.shape[0]


# --------------------------------------------------------------------------- Bollinger bands


class BollingerParams(WindowParams):
    """bollinger_bands: window 20 (rows or a duration) and band width k (2.0) std devs."""

    window: Window = 20
    k: float = 2.0

    @field_validator("k")
    @classmethod
    def _k_range(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"k must be a finite number >= 0, found {value!r}")
        return value


def _bollinger_state(p: BollingerParams) -> list[Field]:
    return (ring_fields(initial_capacity(p.window), per_row=isinstance(p.window, int))
            + moment_fields())


def _bollinger_args(p: BollingerParams) -> tuple[int, int, int, float]:
    rows, span = window_args(p.window)
    return rows, span, p.min_periods, float(p.k)


@kernel("bollinger_bands", params=BollingerParams, inputs=("price",),
        outputs=("bb_mid", "bb_upper", "bb_lower"),
        state=_bollinger_state, args=_bollinger_args, time_window=True,
        formula="mid = mean of the window; bands = mid +/- k * population std (ddof 0)")
@njit(nogil=True, cache=True)
def bollinger_bands(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                    out_mid, out_upper, out_lower, rows, span, min_periods, k):
    """Bollinger bands as TA-Lib's ``BBANDS`` with an SMA: bb_mid = mean of the window,
    bb_upper / bb_lower = bb_mid +/- k * population std (ddof 0).

    Warm-up: NaN until the window holds ``window`` values (row windows) or ``min_periods``
    values (time windows). NaN policy: a NaN price outputs NaN and leaves the state unchanged.
    State: a ring of the window's values and shifted running sums (kernels.window).

    >>> # window 2, k 2, prices 1, 3 -> NaN, then mid 2.0, upper 4.0, lower 0.0
    """
    # out_upper first receives the std, then the band is built from it in place.
    done = rolling_moments(key, ts, x, vals, tss, head, count, shift, s1, s2, since, last, run,
                           out_mid, out_upper, rows, span, min_periods, 0)
    for i in range(done):
        width = k * out_upper[i]
        out_upper[i] = out_mid[i] + width
        out_lower[i] = out_mid[i] - width
    return done
