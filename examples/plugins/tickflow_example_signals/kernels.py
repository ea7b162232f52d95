"""``ema_cross``: +1 when a fast EMA crosses above a slow one, -1 when it crosses below.

Written exactly like a built-in kernel (docs/kernel-guide.md): one numba function that walks the
rows in arrival order with per-key state in arrays the engine owns, declared with ``@kernel``.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import model_validator

from tickflow.kernels.base import Field, Params, kernel


class EmaCrossParams(Params):
    """Two spans, the fast one shorter; checked when the job compiles."""

    fast_span: float = 12.0
    slow_span: float = 26.0

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EmaCrossParams:
        if self.fast_span < 1:
            raise ValueError(f"fast_span must be >= 1, found {self.fast_span}")
        if self.slow_span <= self.fast_span:
            raise ValueError(f"slow_span must be > fast_span, found {self.slow_span} <= "
                             f"{self.fast_span}")
        return self


@kernel("ema_cross", params=EmaCrossParams, inputs=("price",), outputs=("ema_cross",),
        state=lambda p: [Field("fast"), Field("slow"), Field("diff"),
                         Field("count", (), np.int64, 0)],
        args=lambda p: (2.0 / (p.fast_span + 1.0), 2.0 / (p.slow_span + 1.0),
                        int(np.ceil(p.slow_span))),
        formula="sign change of EMA(fast) - EMA(slow): +1 up-cross, -1 down-cross, else 0",
        family="example_signals")
@njit(nogil=True, cache=True)
def ema_cross(key, ts, x, fast, slow, diff, count, out, a_fast, a_slow, warm):
    """EMA crossover signal: +1 on the row where EMA(fast) - EMA(slow) turns positive, -1 where
    it turns negative, 0 otherwise.

    Both EMAs are seeded with the key's first value. Warm-up: NaN for the first ``ceil(slow_span)``
    rows of a key. A NaN input writes NaN and leaves the state unchanged. A difference of exactly
    0 is no cross (the last non-zero sign is kept).

    State per key: ``fast``, ``slow`` (the EMAs), ``diff`` (last non-zero difference), ``count``.

    >>> # prices 1, 1, 1, 5 with spans 1 and 3: the fast EMA jumps above the slow one -> +1
    """
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        f = fast[k]
        s = slow[k]
        if np.isnan(f):
            f = v
            s = v
        else:
            f = a_fast * v + (1.0 - a_fast) * f
            s = a_slow * v + (1.0 - a_slow) * s
        n = count[k] + 1
        d = f - s
        last = diff[k]
        signal = 0.0
        if d != 0.0:
            if not np.isnan(last) and last < 0.0 < d:
                signal = 1.0
            elif not np.isnan(last) and d < 0.0 < last:
                signal = -1.0
            last = d
        out[i] = signal if n > warm else np.nan
        fast[k] = f
        slow[k] = s
        diff[k] = last
        count[k] = n
    return key.shape[0]
