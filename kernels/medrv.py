"""MedRV (family "statistics"): the median realised variance of Andersen, Dobrev and Schaumburg."""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import Field as PydanticField
from pydantic import model_validator

from tickflow.kernels.base import (
    Field,
    Window,
    WindowParams,
    initial_capacity,
    kernel,
    ring_fields,
)
from tickflow.kernels.stat_params import _window_args, min_row_window
from tickflow.kernels.window import (
    RECOMPUTE,
    is_warm,
    ring_advance,
    ring_at,
    ring_expired,
    ring_slot,
)

# --------------------------------------------------------------------------- MedRV

MEDRV_C = np.pi / (6.0 - 4.0 * np.sqrt(3.0) + np.pi)


class MedrvParams(WindowParams):
    """medrv: a (T) window; row windows need >= 3 returns (one median triple)."""

    window: Window = PydanticField(20,
                                   description="rows (or a duration) of the median realized "
                                               "variance")

    @model_validator(mode="after")
    def _enough_rows(self) -> MedrvParams:
        min_row_window(self, 3)
        return self


def _medrv_state(p: MedrvParams) -> list[Field]:
    return [*ring_fields(initial_capacity(p.window), values=("absr", "med2")),
            Field("msum", (), np.float64, 0.0), Field("msince", (), np.int64, 0)]


@kernel("medrv", family="statistics",
        params=MedrvParams, inputs=("log_return",), outputs=("medrv",),
        state=_medrv_state, args=_window_args, time_window=True,
        formula="(pi / (6 - 4 sqrt 3 + pi)) (n / (n - 2)) sum median(|r_{i-1}|, |r_i|, "
                "|r_{i+1}|)^2 over the window")
@njit(nogil=True, cache=True)
def medrv(key, ts, r, absr, med2, tss, head, count, msum, msince, out, rows, span,
          min_periods):
    """Median realized variance (Andersen, Dobrev & Schaumburg 2012) over a window.

    With the window's n returns r_1..r_n (oldest first): (pi / (6 - 4 sqrt(3) + pi))
    * (n / (n - 2)) * sum_{i=2}^{n-1} median(|r_{i-1}|, |r_i|, |r_{i+1}|)^2, i.e. the n - 2
    triples lying wholly in the window.

    Warm-up: NaN until the window holds ``window`` valid returns (rows) or ``min_periods``
    (time), and while it holds fewer than 3. A NaN return outputs NaN and changes nothing.

    State: a ring of |r| and of each return's squared triple median (the triple it closes),
    with timestamps; the running sum of the medians of the triples in the window.

    >>> # r = 1, -2, 3 with window 3 -> NaN, NaN, MEDRV_C * 3 * 4
    """
    cap = absr.shape[1]
    for i in range(key.shape[0]):
        k = key[i]
        v = r[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        t = ts[i]
        while ring_expired(tss, head, count, k, t, rows, span):
            if count[k] >= 3:  # the triple closed by the 3rd oldest loses its first element
                msum[k] -= med2[k, ring_at(head, k, cap, 2)]
            ring_advance(head, count, k, cap)
        if count[k] < 3:
            msum[k] = 0.0
        if count[k] == cap:
            return i
        a = abs(v)
        m2 = 0.0
        c = count[k]
        if c >= 2:
            p1 = absr[k, ring_at(head, k, cap, c - 1)]
            p2 = absr[k, ring_at(head, k, cap, c - 2)]
            med = max(min(a, p1), min(max(a, p1), p2))
            m2 = med * med
            msum[k] += m2
        pos = ring_slot(head, count, k, cap)
        absr[k, pos] = a
        med2[k, pos] = m2
        tss[k, pos] = t
        count[k] += 1
        msince[k] += 1
        if msince[k] >= RECOMPUTE:
            total = 0.0
            for j in range(2, count[k]):
                total += med2[k, ring_at(head, k, cap, j)]
            msum[k] = total
            msince[k] = 0
        n = count[k]
        if n < 3 or not is_warm(count, k, rows, min_periods):
            out[i] = np.nan
            continue
        s = msum[k]
        out[i] = MEDRV_C * (n / (n - 2.0)) * (s if s > 0.0 else 0.0)
    return key.shape[0]
