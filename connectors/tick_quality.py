"""Checks that keep broken ticks out of the kernels, and the YAML policy for what happens then.

A decoded tick can still be unusable: a NaN, zero or negative price, a crossed quote (bid above
ask) or a timestamp far behind what the same symbol already reported. Each case is flagged
with its own reason and counted; the source's ``quality.policy`` decides where the row goes:
``dead_letter`` (default: out of the batch, into the dead-letter sink with its raw payload),
``drop`` (out of the batch, counted only) or ``keep`` (counted, left in for the kernels).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tickflow.engine import durations
from tickflow.engine.keys import KeyIndex

QualityPolicy = Literal["dead_letter", "drop", "keep"]
REASONS = ("nan_price", "non_positive_price", "crossed_quote", "late_timestamp")


def parse_duration_us(text: str | int | float) -> int:
    """``500ms``, ``5s``, ``2m``, ``1h`` (or a number of seconds) as microseconds, >= 0."""
    return durations.parse_duration_us(text, number_unit="s", allow_zero=True)


class TickQualityConfig(BaseModel):
    """Which ticks count as broken, and what happens to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: QualityPolicy = Field("dead_letter",
                                  description="dead_letter | drop | keep flagged ticks")
    max_lateness: str = Field(
        "5s", description="a tick older than the newest one of its symbol by more than this "
                          "is late (duration: 500ms, 5s, 1m)")
    check_crossed: bool = Field(True, description="flag quotes with best_bid > best_ask")

    @field_validator("max_lateness")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration_us(value)
        return value


class TickQuality:
    """Flags broken ticks batch by batch; remembers each symbol's newest timestamp.

    Args:
        config: thresholds and policy.
        key: the column keying the lateness watermark (the job's key).
    """

    def __init__(self, config: TickQualityConfig, key: str = "symbol"):
        self.config = config
        self.key = key
        self.max_lateness_us = parse_duration_us(config.max_lateness)
        self.keys = KeyIndex()
        self.watermark = np.full(0, np.iinfo(np.int64).min, dtype=np.int64)
        self.counts: Counter[str] = Counter()

    def check(self, batch: pa.RecordBatch) -> list[tuple[int, str]]:
        """``(row, reason)`` for every flagged row (the first reason that applies), counted.

        The watermark advances with every tick that is not flagged.
        """
        n = batch.num_rows
        if n == 0:
            return []
        reason = np.full(n, -1, dtype=np.int8)
        price = _floats(batch, "price")
        reason[np.isnan(price) & (reason < 0)] = 0
        reason[(price <= 0) & (reason < 0)] = 1
        if self.config.check_crossed and "best_bid" in batch.schema.names:
            bid, ask = _floats(batch, "best_bid"), _floats(batch, "best_ask")
            with np.errstate(invalid="ignore"):
                crossed = bid > ask  # NaN on either side is not a crossed quote
            reason[crossed & (reason < 0)] = 2
        late = self._late(batch, reason < 0)
        reason[late & (reason < 0)] = 3
        rows = np.flatnonzero(reason >= 0)
        flagged = [(int(i), REASONS[reason[i]]) for i in rows]
        self.counts.update(r for _, r in flagged)
        return flagged

    def _late(self, batch: pa.RecordBatch, usable: np.ndarray) -> np.ndarray:
        ts = batch.column("timestamp")
        ts_us = pc.fill_null(pc.cast(ts, pa.int64()), 0).to_numpy(zero_copy_only=False)
        gid = self.keys.encode(batch.column(self.key))
        if len(self.keys) > self.watermark.shape[0]:
            grown = np.full(len(self.keys), np.iinfo(np.int64).min, dtype=np.int64)
            grown[: self.watermark.shape[0]] = self.watermark
            self.watermark = grown
        late = np.zeros(batch.num_rows, dtype=bool)
        for g in np.unique(gid):
            rows = np.flatnonzero(gid == g)
            values = ts_us[rows]
            # newest timestamp seen before each row, this batch included
            before = np.maximum.accumulate(
                np.concatenate([[self.watermark[g]], np.where(usable[rows], values,
                                                              np.iinfo(np.int64).min)]))[:-1]
            is_late = values + self.max_lateness_us < before  # MIN before: never late
            late[rows] = is_late
            keep = usable[rows] & ~is_late
            if keep.any():
                self.watermark[g] = max(self.watermark[g], int(values[keep].max()))
        return late

    def apply(self, batch: pa.RecordBatch, flagged: list[tuple[int, str]]) -> pa.RecordBatch:
        """The batch the kernels see under the policy (flagged rows removed unless ``keep``)."""
        if not flagged or self.config.policy == "keep":
            return batch
        mask = np.ones(batch.num_rows, dtype=bool)
        mask[[i for i, _ in flagged]] = False
        return batch.filter(pa.array(mask))


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    col = batch.column(name)
    if col.null_count:
        col = pc.fill_null(col, np.nan)
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
