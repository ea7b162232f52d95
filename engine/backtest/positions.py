"""Position moves of the simulator: close and open a symbol's position at a price (fees,
sizing, the trade log), queue an order, and sample equity on the grid."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tickflow.engine.backtest.sim_layout import (
    C_CASH,
    C_FRACTION,
    C_LATENCY,
    C_MAXLEV,
    C_MAXPOS,
    C_NOTIONAL,
    C_PER_SYMBOL,
    C_SIZING,
    C_TVOL,
    F_EFEE,
    F_EPX,
    F_FEES,
    F_MARK,
    F_PVOL,
    F_QTY,
    F_REAL,
    F_TURNOVER,
    F_UNREAL,
    G_REAL,
    G_UNREAL,
    GI_ANY_SINCE,
    GI_ANY_TIME,
    GI_OPEN,
    GI_REJECTED,
    GI_SKIPPED,
    GI_TRADES,
    I_COUNT,
    I_ESIG,
    I_ETS,
    I_FIRST,
    I_PON,
    I_PPOSTED,
    I_PREASON,
    I_PROW,
    I_PSIG,
    I_PTARGET,
    I_PTS,
    I_SINCE,
    I_TIMEIN,
    R_REVERSE,
    R_SIGNAL,
    T_EPX,
    T_ESIG,
    T_ETS,
    T_FEES,
    T_PNL,
    T_QTY,
    T_REASON,
    T_SIDE,
    T_SYM,
    T_XPX,
    T_XSIG,
    T_XTS,
    YEAR_S,
)


@njit(nogil=True, cache=True)
def equity(st, g, cfg, s, alloc):
    if cfg[C_PER_SYMBOL] > 0.0:
        return alloc + st[s, F_REAL] + st[s, F_UNREAL]
    return cfg[C_CASH] + g[G_REAL] + g[G_UNREAL]


@njit(nogil=True, cache=True)
def transition(s, t, px, fee_rate, target, sig_ts, reason, vol_sig, st, ist, g, gi, trades,
                cfg, alloc):
    """Move symbol ``s`` to ``target`` (-1, 0, 1) at ``px``: close, then maybe open."""
    q = st[s, F_QTY]
    if q != 0.0:
        fee = abs(q) * px * fee_rate
        gross = q * (px - st[s, F_EPX])
        g[G_REAL] += gross - fee
        st[s, F_REAL] += gross - fee
        g[G_UNREAL] -= st[s, F_UNREAL]
        st[s, F_UNREAL] = 0.0
        st[s, F_FEES] += fee
        st[s, F_TURNOVER] += abs(q) * px
        k = gi[GI_TRADES]
        trades[k, T_SYM] = s
        trades[k, T_SIDE] = 1.0 if q > 0 else -1.0
        trades[k, T_ESIG] = ist[s, I_ESIG]
        trades[k, T_ETS] = ist[s, I_ETS]
        trades[k, T_EPX] = st[s, F_EPX]
        trades[k, T_XSIG] = sig_ts
        trades[k, T_XTS] = t
        trades[k, T_XPX] = px
        trades[k, T_QTY] = abs(q)
        trades[k, T_FEES] = st[s, F_EFEE] + fee
        trades[k, T_PNL] = gross - fee - st[s, F_EFEE]
        trades[k, T_REASON] = R_REVERSE if (target != 0 and reason == R_SIGNAL) else reason
        gi[GI_TRADES] = k + 1
        st[s, F_QTY] = 0.0
        ist[s, I_TIMEIN] += t - ist[s, I_SINCE]
        gi[GI_OPEN] -= 1
        if gi[GI_OPEN] == 0:
            gi[GI_ANY_TIME] += t - gi[GI_ANY_SINCE]
    if target == 0:
        return
    if cfg[C_MAXPOS] > 0.0 and gi[GI_OPEN] >= cfg[C_MAXPOS]:
        gi[GI_REJECTED] += 1
        return
    base = equity(st, g, cfg, s, alloc)
    sizing = cfg[C_SIZING]
    if sizing == 0.0:
        notional = cfg[C_NOTIONAL]
    elif sizing == 1.0:
        notional = cfg[C_FRACTION] * base
    else:
        elapsed_s = (t - ist[s, I_FIRST]) / 1e6
        notional = np.nan
        if elapsed_s > 0.0 and ist[s, I_COUNT] > 1 and vol_sig > 0.0:
            rate = (ist[s, I_COUNT] - 1) / elapsed_s
            vol_annual = vol_sig * math.sqrt(rate * YEAR_S)
            notional = min(cfg[C_TVOL] / vol_annual, cfg[C_MAXLEV]) * base
    if not (notional > 0.0) or not (px > 0.0):
        gi[GI_SKIPPED] += 1
        return
    qty = notional / px
    fee = qty * px * fee_rate
    st[s, F_QTY] = qty if target > 0 else -qty
    st[s, F_EPX] = px
    st[s, F_EFEE] = fee
    st[s, F_REAL] -= fee
    g[G_REAL] -= fee
    st[s, F_FEES] += fee
    st[s, F_TURNOVER] += qty * px
    mark = st[s, F_MARK]
    u = st[s, F_QTY] * (mark - px) if mark == mark else 0.0
    st[s, F_UNREAL] = u
    g[G_UNREAL] += u
    ist[s, I_ETS] = t
    ist[s, I_ESIG] = sig_ts
    ist[s, I_SINCE] = t
    gi[GI_OPEN] += 1
    if gi[GI_OPEN] == 1:
        gi[GI_ANY_SINCE] = t


@njit(nogil=True, cache=True)
def set_pending(s, i, t, target, reason, vol_sig, st, ist, cfg):
    ist[s, I_PON] = 1
    ist[s, I_PTARGET] = target
    ist[s, I_PROW] = i
    ist[s, I_PTS] = t + np.int64(cfg[C_LATENCY])
    ist[s, I_PSIG] = t
    ist[s, I_PREASON] = reason
    ist[s, I_PPOSTED] = 0
    st[s, F_PVOL] = vol_sig


@njit(nogil=True, cache=True)
def write_grid(cur_b, b, eq_total, eq_sym, st, g, cfg, alloc, n_sym):
    while cur_b < b:
        eq_total[cur_b] = cfg[C_CASH] + g[G_REAL] + g[G_UNREAL]
        for j in range(n_sym):
            eq_sym[cur_b, j] = st[j, F_REAL] + st[j, F_UNREAL]  # the symbol's P&L so far
        cur_b += 1
    return cur_b
