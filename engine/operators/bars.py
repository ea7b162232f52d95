"""Bars: time bars (``resample_ohlc``) and activity bars (``volume_bars``, ``dollar_bars``).

Time bars are epoch-aligned intervals ``[bar_start, bar_end)``. Every output row carries
``timestamp = bar_end``: the moment the bar is complete, so a backward ``asof_join`` of bars onto
ticks on ``timestamp`` only ever sees bars that had closed by the tick's time (no look-ahead).
A bar is emitted as soon as the input shows it is closed: the first row of a later interval,
of any key, closes every open bar (inputs are in timestamp order, as every source is; a row
older than the current interval is an error). At the end of the input the open bars are
flushed, so batch and streaming runs give the same bars, in the same order (bar_end, then key
in order of first appearance). Intervals without a valid price produce no bar.

Activity bars close at the row whose size (or price * size) brings the key's running total to
the threshold; that row is part of the bar, the excess is not carried over, and the running
total restarts at 0. ``timestamp = bar_end`` is that row's time. A partial bar at the end of
the input is not a bar and is not emitted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from numba import njit
from pydantic import Field

from tickflow.engine.operators.base import (
    BoundOperator,
    OperatorSpecError,
    floats,
    operator,
    timestamps_us,
)
from tickflow.engine.operators.keyed import KeyedOperator
from tickflow.kernels.base import Duration, Params, parse_duration_us

BAR_COLUMNS = ("bar_start", "bar_end", "open", "high", "low", "close", "volume", "vwap",
               "trades")
_NONE = np.iinfo(np.int64).min


class ResampleParams(Params):
    interval: Duration = Field(description="bar length, e.g. 1m, 1h, 1d")
    key: str | None = Field(None, description="key column (default: the job's key)")


class ThresholdParams(Params):
    threshold: float = Field(gt=0, description="size (or notional) that closes a bar")
    key: str | None = Field(None, description="key column (default: the job's key)")


_BAR_FIELDS: dict[str, tuple[Any, Any]] = {
    "open_flag": (np.int8, 0), "start": (np.int64, 0), "open": (np.float64, np.nan),
    "high": (np.float64, np.nan), "low": (np.float64, np.nan), "close": (np.float64, np.nan),
    "volume": (np.float64, 0.0), "pv": (np.float64, 0.0), "trades": (np.int64, 0),
    "acc": (np.float64, 0.0)}


@njit(nogil=True, cache=True)
def _add_row(k, t, p, s, open_flag, start, o, h, lo, c, vol, pv, trades):
    if open_flag[k] == 0:
        open_flag[k] = 1
        start[k] = t
        o[k] = p
        h[k] = p
        lo[k] = p
        vol[k] = 0.0
        pv[k] = 0.0
        trades[k] = 0
    h[k] = max(h[k], p)
    lo[k] = min(lo[k], p)
    c[k] = p
    if not np.isnan(s):
        vol[k] += s
        pv[k] += p * s
    trades[k] += 1


@njit(nogil=True, cache=True)
def _emit(k, m, start_t, end_t, o, h, lo, c, vol, pv, trades,
          ok, ostart, oend, oo, oh, ol, oc, ovol, ovwap, otr):
    ok[m] = k
    ostart[m] = start_t
    oend[m] = end_t
    oo[m] = o[k]
    oh[m] = h[k]
    ol[m] = lo[k]
    oc[m] = c[k]
    ovol[m] = vol[k]
    ovwap[m] = pv[k] / vol[k] if vol[k] > 0 else np.nan
    otr[m] = trades[k]


@njit(nogil=True, cache=True)
def _resample(key, ts, price, size, interval, bucket, flush, n_keys,
              open_flag, start, o, h, lo, c, vol, pv, trades,
              ok, ostart, oend, oo, oh, ol, oc, ovol, ovwap, otr):
    """Time bars; returns the number of bars written, or -(row + 1) for a late row.

    ``bucket[0]`` is the current interval index (all open bars belong to it)."""
    m = 0
    for i in range(key.shape[0]):
        b = ts[i] // interval
        if bucket[0] != _NONE and b < bucket[0]:
            return -(i + 1)
        if b != bucket[0]:
            if bucket[0] != _NONE:
                for k in range(n_keys):
                    if open_flag[k]:
                        _emit(k, m, bucket[0] * interval, (bucket[0] + 1) * interval, o, h,
                              lo, c, vol, pv, trades, ok, ostart, oend, oo, oh, ol, oc,
                              ovol, ovwap, otr)
                        open_flag[k] = 0
                        m += 1
            bucket[0] = b
        p = price[i]
        if np.isnan(p):
            continue
        _add_row(key[i], ts[i], p, size[i], open_flag, start, o, h, lo, c, vol, pv, trades)
    if flush and bucket[0] != _NONE:
        for k in range(n_keys):
            if open_flag[k]:
                _emit(k, m, bucket[0] * interval, (bucket[0] + 1) * interval, o, h, lo, c,
                      vol, pv, trades, ok, ostart, oend, oo, oh, ol, oc, ovol, ovwap, otr)
                open_flag[k] = 0
                m += 1
    return m


@njit(nogil=True, cache=True)
def _threshold_bars(key, ts, price, size, threshold, dollar,
                    open_flag, start, o, h, lo, c, vol, pv, trades, acc,
                    ok, ostart, oend, oo, oh, ol, oc, ovol, ovwap, otr):
    """Volume or dollar bars; returns the number of bars written."""
    m = 0
    for i in range(key.shape[0]):
        p = price[i]
        if np.isnan(p):
            continue
        k = key[i]
        s = size[i]
        _add_row(k, ts[i], p, s, open_flag, start, o, h, lo, c, vol, pv, trades)
        if not np.isnan(s):
            acc[k] += p * s if dollar else s
        if acc[k] >= threshold:
            _emit(k, m, start[k], ts[i], o, h, lo, c, vol, pv, trades,
                  ok, ostart, oend, oo, oh, ol, oc, ovol, ovwap, otr)
            open_flag[k] = 0
            acc[k] = 0.0
            m += 1
    return m


class _BarOperator(KeyedOperator):
    fields: ClassVar[dict[str, tuple[Any, Any]]] = _BAR_FIELDS

    @classmethod
    def check(cls, bound: BoundOperator, columns: dict[str, list[str]]) -> list[str]:
        cls.check_stream(bound, columns, list(bound.input_columns))
        new = list(bound.output_columns)
        clash = [c for c in new if c in ("timestamp", bound.key)]
        if clash:
            raise OperatorSpecError(f"output column {clash[0]!r} of step '{bound.step_id}' "
                                    f"would hide the bar's time or key; rename it",
                                    ("outputs",))
        return ["timestamp", bound.key, *new]

    def bind(self, schemas: dict[str, pa.Schema]) -> pa.Schema:
        schema = schemas["in"]
        self.key_type = schema.field(self.bound.key).type
        ts_type = schema.field("timestamp").type
        if not pa.types.is_timestamp(ts_type):
            ts_type = pa.timestamp("us", tz="UTC")
        self.ts_type = ts_type
        names = self.bound.output_columns
        types = [ts_type, ts_type, *[pa.float64()] * 6, pa.int64()]
        self.schema = pa.schema([pa.field("timestamp", ts_type),
                                 pa.field(self.bound.key, self.key_type),
                                 *[pa.field(n, t) for n, t in zip(names, types, strict=True)]])
        return self.schema

    def _columns(self, batch: pa.RecordBatch) -> tuple[np.ndarray, ...]:
        key = self.key_ids(batch)
        ts, null_at = timestamps_us(batch.column("timestamp"))
        if null_at >= 0:
            raise self.fail(f"null timestamp at row {self.rows_in + null_at} of stream "
                            f"'{self.bound.streams['in']}'")
        price = floats(batch.column(self.bound.input_columns[0]))
        size = floats(batch.column(self.bound.input_columns[1]))
        return key, ts, price, size

    def _outputs(self, n: int) -> list[np.ndarray]:
        return [np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                *[np.empty(n, np.float64) for _ in range(6)], np.empty(n, np.int64)]

    def _batch(self, outs: list[np.ndarray], m: int) -> list[pa.RecordBatch]:
        if m == 0:
            return []
        assert self.schema is not None
        ok, ostart, oend, *values = (o[:m] for o in outs)
        ts_type = self.ts_type
        arrays = [pa.array(oend, pa.int64()).cast(ts_type), self.key_values(ok),
                  pa.array(ostart, pa.int64()).cast(ts_type),
                  pa.array(oend, pa.int64()).cast(ts_type),
                  *[pa.array(v) for v in values]]
        return [pa.RecordBatch.from_arrays(arrays, schema=self.schema)]

    def state_args(self) -> list[np.ndarray]:
        s = self.state
        return [s["open_flag"], s["start"], s["open"], s["high"], s["low"], s["close"],
                s["volume"], s["pv"], s["trades"]]


@operator("resample_ohlc", params=ResampleParams, inputs=("price", "last_size"),
          outputs=BAR_COLUMNS, family="bars",
          formula="per key and epoch-aligned interval [bar_start, bar_end): first, max, min, "
                  "last price, sum size, sum(p*s)/sum(s), rows; timestamp = bar_end")
class ResampleOhlc(_BarOperator):
    """OHLC bars per key and time interval, emitted when a later row closes the interval."""

    def __init__(self, bound: BoundOperator):
        super().__init__(bound)
        self.interval = parse_duration_us(self.params.interval)
        self.scalars["bucket"] = int(_NONE)

    def _run(self, key: np.ndarray, ts: np.ndarray, price: np.ndarray, size: np.ndarray,
             flush: bool) -> list[pa.RecordBatch]:
        bucket = np.array([self.scalars["bucket"]], dtype=np.int64)
        outs = self._outputs(key.shape[0] + len(self.keys))
        m = _resample(key, ts, price, size, self.interval, bucket, flush, len(self.keys),
                      *self.state_args(), *outs)
        if m < 0:
            row = self.rows_in - key.shape[0] + (-m - 1)
            raise self.fail(f"row {row} of stream '{self.bound.streams['in']}' is earlier than "
                            f"the interval already being built; the input must be in "
                            f"timestamp order")
        self.scalars["bucket"] = int(bucket[0])
        return self._batch(outs, m)

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        key, ts, price, size = self._columns(batch)
        self.rows_in += batch.num_rows
        return self._run(key, ts, price, size, flush=False)

    def watermark(self) -> int | None:
        """Bars still to come close at the end of the current interval or later."""
        bucket = self.scalars["bucket"]
        return None if bucket == _NONE else (bucket + 1) * self.interval

    def end(self, port: str) -> list[pa.RecordBatch]:
        empty_i = np.empty(0, np.int64)
        empty_f = np.empty(0, np.float64)
        return self._run(empty_i, empty_i, empty_f, empty_f, flush=True)


class _ThresholdBars(_BarOperator):
    dollar = False

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        key, ts, price, size = self._columns(batch)
        self.rows_in += batch.num_rows
        if ts.size:
            self.scalars["last_ts"] = int(ts[-1])
        outs = self._outputs(key.shape[0])
        m = _threshold_bars(key, ts, price, size, float(self.params.threshold), self.dollar,
                            *self.state_args(), self.state["acc"], *outs)
        return self._batch(outs, m)

    def end(self, port: str) -> list[pa.RecordBatch]:
        return []

    def watermark(self) -> int | None:
        """A bar closes at an input row, so none is earlier than the last row seen."""
        return self.scalars.get("last_ts")


@operator("volume_bars", params=ThresholdParams, inputs=("price", "last_size"),
          outputs=BAR_COLUMNS, family="bars",
          formula="per key, a bar closes at the row where sum(size) since the last bar "
                  ">= threshold; timestamp = bar_end = that row's time")
class VolumeBars(_ThresholdBars):
    """Bars of equal traded size per key."""


@operator("dollar_bars", params=ThresholdParams, inputs=("price", "last_size"),
          outputs=BAR_COLUMNS, family="bars",
          formula="per key, a bar closes at the row where sum(price * size) since the last "
                  "bar >= threshold; timestamp = bar_end = that row's time")
class DollarBars(_ThresholdBars):
    """Bars of equal traded notional per key."""

    dollar = True
