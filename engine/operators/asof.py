"""``asof_join``: each left row joined with the nearest right row of the same key in time.

The result equals pandas ``merge_asof(left, right, on=on, by=by, direction=...,
tolerance=..., allow_exact_matches=..., suffixes=...)`` row for row: left rows keep their
order, right ties resolve as pandas does (backward takes the last of equal right times,
forward the first, nearest prefers the backward match on equal distance), null ``by`` values
match each other, and an unmatched row gets nulls. Like pandas, each input must be in
``on`` order (keys may interleave freely); a row out of order is a runtime error.

Streaming: both inputs are buffered and merged in time order up to the *frontier*, the
smaller of the two streams' latest times (an ended stream no longer holds it back). Every
event earlier than the frontier is final. A left row is emitted, in left order, once its match
cannot change: at once for backward; for forward and nearest, once a later right row of its key
arrived or the frontier passed its time plus the tolerance; at the end, everything. So any
split of either input into batches gives the same rows as one batch, and the same as pandas.
The right rows kept are only those a pending row or a key's last match still needs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from tickflow.engine.keys import KeyIndex
from tickflow.engine.operators.asof_match import (
    append,
    choose,
    expire,
    final_prefix,
    grow,
    merge_events,
    take,
)
from tickflow.engine.operators.base import (
    BoundOperator,
    Operator,
    OperatorSpecError,
    operator,
    require_columns,
    timestamps_us,
)
from tickflow.kernels.base import Duration, Params, parse_duration_us

_NONE = np.iinfo(np.int64).min
_INF = np.iinfo(np.int64).max


class AsofParams(Params):
    right: str = Field(description="the stream whose rows are looked up (a source id or an "
                                   "operator step id)")
    left: str | None = Field(None, description="the stream whose rows are kept (default: "
                                               "the step's `from:`)")
    on: str = Field("timestamp", description="time column, in both streams")
    by: str | None = Field(None, description="key column, in both streams (default: the "
                                             "job's key)")
    direction: Literal["backward", "forward", "nearest"] = Field(
        "backward", description="backward: the last right row at or before; forward: the first "
                                "at or after; nearest: the closest")
    tolerance: Duration | None = Field(None, description="largest time distance of a match, "
                                                         "e.g. 2s (default: any)")
    allow_exact_matches: bool = Field(True, description="whether equal times match")
    suffixes: tuple[str, str] = Field(("_x", "_y"), description="added to left and right "
                                                               "column names that clash")

    @field_validator("suffixes")
    @classmethod
    def _distinct(cls, value: tuple[str, str]) -> tuple[str, str]:
        if value[0] == value[1]:
            raise ValueError(f"the two suffixes must differ, found {list(value)}")
        return value


@operator("asof_join", params=AsofParams, family="joins",
          formula="left rows, each with the right row of the same `by` whose `on` is the last "
                  "<= (backward), first >= (forward) or closest (nearest) within tolerance; "
                  "= pandas merge_asof")
class AsofJoin(Operator):
    """As-of join of two streams, equal to pandas ``merge_asof``."""

    ports = ("left", "right")

    def __init__(self, bound: BoundOperator):
        super().__init__(bound)
        p = self.params
        self.direction = {"backward": 0, "forward": 1, "nearest": 2}[p.direction]
        self.need_bwd = self.direction != 1
        self.need_fwd = self.direction != 0
        self.tolerance = parse_duration_us(p.tolerance) if p.tolerance is not None else -1
        self.on = p.on
        self.by = bound.key
        self.keys = KeyIndex()
        self.ended = {"left": False, "right": False}
        self.last_ts = {"left": _NONE, "right": _NONE}
        self.rows_in = {"left": 0, "right": 0}
        # pending left rows (not yet emitted)
        self.left_tab: pa.Table | None = None
        self.lts = np.empty(0, np.int64)
        self.lkey = np.empty(0, np.int64)
        self.bwd = np.empty(0, np.int64)
        self.fwd = np.empty(0, np.int64)
        self.q_next = np.empty(0, np.int64)
        self.l_proc = 0
        self.cap = 0
        # right rows kept (applied ones still referenced, and unapplied ones)
        self.right_tab: pa.Table | None = None
        self.rts = np.empty(0, np.int64)
        self.rkey = np.empty(0, np.int64)
        self.r_applied = 0
        self.kept = 0  # right rows kept by the last compaction
        # per key
        self.last_r = np.full(8, -1, np.int64)
        self.q_head = np.full(8, -1, np.int64)
        self.q_tail = np.full(8, -1, np.int64)

    # ----------------------------------------------------------------- compile time

    @classmethod
    def check(cls, bound: BoundOperator, columns: dict[str, list[str]]) -> list[str]:
        p = bound.params
        left, right = columns["left"], columns["right"]
        for port, cols in (("left", left), ("right", right)):
            stream = bound.streams[port]
            require_columns(bound, cols, [p.on], stream, ("params", "on"))
            require_columns(bound, cols, [bound.key], stream,
                            ("params", "by") if p.by is not None else ("params", port))
        names = cls.output_names(bound, left, right)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise OperatorSpecError(f"column {name!r} would appear twice in the output of "
                                        f"step '{bound.step_id}'; choose other `suffixes`",
                                        ("params", "suffixes"))
            seen.add(name)
        return names

    @staticmethod
    def output_names(bound: BoundOperator, left: list[str], right: list[str]) -> list[str]:
        p = bound.params
        exclude = {p.on, bound.key}
        right_values = [c for c in right if c not in exclude]
        clash = set(right_values) & (set(left) - exclude)
        lsuf, rsuf = p.suffixes
        return ([c + lsuf if c in clash else c for c in left]
                + [c + rsuf if c in clash else c for c in right_values])

    # ----------------------------------------------------------------- run time

    def bind(self, schemas: dict[str, pa.Schema]) -> pa.Schema:
        left, right = schemas["left"], schemas["right"]
        exclude = {self.on, self.by}
        self.right_values = [c for c in right.names if c not in exclude]
        names = self.output_names(self.bound, left.names, right.names)
        fields = [left.field(c) for c in left.names] + [right.field(c)
                                                        for c in self.right_values]
        self.schema = pa.schema([f.with_name(n) for f, n in zip(fields, names, strict=True)])
        self.right_schema = pa.schema([right.field(c) for c in self.right_values])
        return self.schema

    def _times(self, port: str, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        stream = self.bound.streams[port]
        ts, null_at = timestamps_us(batch.column(self.on))
        if null_at >= 0:
            raise self.fail(f"null {self.on!r} at row {self.rows_in[port] + null_at} of "
                            f"stream '{stream}' ({port}); as-of joins need a time on every row")
        bad = np.empty(0, np.int64)
        if ts.size and (ts[0] < self.last_ts[port] or np.any(ts[1:] < ts[:-1])):
            bad = np.flatnonzero(ts < np.concatenate([[self.last_ts[port]], ts[:-1]]))
        if bad.size:
            raise self.fail(f"stream '{stream}' ({port}) is not in {self.on!r} order: row "
                            f"{self.rows_in[port] + int(bad[0])} is earlier than the row "
                            f"before it; sort it by {self.on!r}")
        key = np.ascontiguousarray(self.keys.encode(batch.column(self.by)), dtype=np.int64)
        n = len(self.keys)
        self.last_r = grow(self.last_r, n, -1)
        self.q_head = grow(self.q_head, n, -1)
        self.q_tail = grow(self.q_tail, n, -1)
        if ts.size:
            self.last_ts[port] = int(ts[-1])
        self.rows_in[port] += batch.num_rows
        return ts, key

    def push(self, port: str, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        if batch.num_rows == 0:
            return []
        ts, key = self._times(port, batch)
        table = pa.Table.from_batches([batch])
        if port == "left":
            self.left_tab = table if self.left_tab is None else pa.concat_tables(
                [self.left_tab, table])
            self.lts, self.lkey = append(self.lts, ts), append(self.lkey, key)
            pad = np.full(ts.size, -1, np.int64)
            self.bwd, self.fwd = append(self.bwd, pad), append(self.fwd, pad.copy())
            self.q_next = append(self.q_next, pad.copy())
        else:
            values = table.select(self.right_values)
            self.right_tab = values if self.right_tab is None else pa.concat_tables(
                [self.right_tab, values])
            self.rts, self.rkey = append(self.rts, ts), append(self.rkey, key)
        return self._step()

    def end(self, port: str) -> list[pa.RecordBatch]:
        self.ended[port] = True
        return self._step()

    def advance(self, port: str, mark: int) -> list[pa.RecordBatch]:
        if mark <= self.last_ts[port] or self.ended[port]:
            return []
        self.last_ts[port] = mark
        return self._step()

    def watermark(self) -> int | None:
        """Rows leave in left order, so none is earlier than the first pending left row."""
        if self.on != "timestamp":
            return None
        if self.lts.size:
            return int(self.lts[0])
        return None if self.last_ts["left"] == _NONE else self.last_ts["left"]

    def _mark(self, port: str) -> int:
        return _INF if self.ended[port] else self.last_ts[port]

    def _step(self) -> list[pa.RecordBatch]:
        out = np.zeros(4, np.int64)
        merge_events(self.lts, self.lkey, self.l_proc, self.cap, self.rts, self.rkey,
                 self.r_applied, self._mark("left"), self._mark("right"),
                 bool(self.params.allow_exact_matches), self.need_bwd, self.need_fwd,
                 self.last_r, self.q_head, self.q_tail, self.q_next, self.bwd, self.fwd, out)
        self.l_proc, self.r_applied, self.cap = int(out[0]), int(out[1]), int(out[2])
        limit = int(out[3])
        ended = all(self.ended.values())
        if self.need_fwd and self.tolerance >= 0:
            expire(self.lts, limit, self.tolerance, self.q_head, self.q_tail, self.q_next)
        e = int(final_prefix(self.lts, self.l_proc, self.cap, self.need_bwd, self.fwd,
                              self.need_fwd, ended, limit, self.tolerance))
        result = self._emit(e) if e else []
        self._compact()
        return result

    def _emit(self, e: int) -> list[pa.RecordBatch]:
        assert self.left_tab is not None and self.schema is not None
        match = choose(self.lts[:e], self.bwd[:e], self.fwd[:e], self.rts, self.direction,
                        self.tolerance)
        left = self.left_tab.slice(0, e)
        if self.right_tab is None:
            right_cols = [pa.nulls(e, f.type) for f in self.right_schema]
        else:
            right_cols = [take(self.right_tab.column(c), match) for c in self.right_values]
        table = pa.Table.from_arrays([*left.columns, *right_cols], schema=self.schema)
        # drop the emitted rows from the pending buffers; queued rows are all unemitted
        self.left_tab = self.left_tab.slice(e)
        self.lts, self.lkey = self.lts[e:], self.lkey[e:]
        self.bwd, self.fwd = self.bwd[e:], self.fwd[e:]
        self.q_next = np.where(self.q_next[e:] >= 0, self.q_next[e:] - e, -1)
        self.q_head = np.where(self.q_head >= 0, self.q_head - e, -1)
        self.q_tail = np.where(self.q_tail >= 0, self.q_tail - e, -1)
        self.l_proc -= e
        self.cap -= e
        return table.combine_chunks().to_batches()

    def _compact(self) -> None:
        """Keep only the right rows still referenced; renumber the references.

        Runs when the store has doubled since the last compaction, so its cost is amortised.
        """
        n = self.rts.shape[0]
        if self.right_tab is None or n < max(2 * self.kept, 65_536):
            return
        refs = [r[r >= 0] for r in (self.last_r, self.bwd, self.fwd)]
        if sum(r.size for r in refs) + n - self.r_applied < n // 8:  # few kept: sort them
            keep = np.unique(np.concatenate([*refs, np.arange(self.r_applied, n)]))

            def renumber(a: np.ndarray) -> np.ndarray:
                return np.where(a >= 0, np.searchsorted(keep, a), -1)
        else:
            used = np.zeros(n, dtype=bool)
            for r in refs:
                used[r] = True
            used[self.r_applied:] = True
            keep = np.flatnonzero(used)
            new_index = np.cumsum(used) - 1

            def renumber(a: np.ndarray) -> np.ndarray:
                return np.where(a >= 0, new_index[np.maximum(a, 0)], -1)

        self.last_r = renumber(self.last_r)
        self.bwd, self.fwd = renumber(self.bwd), renumber(self.fwd)
        self.r_applied = int(np.searchsorted(keep, self.r_applied))
        self.right_tab = self.right_tab.take(pa.array(keep)).combine_chunks()
        self.rts, self.rkey = self.rts[keep], self.rkey[keep]
        self.kept = int(keep.size)

    # ----------------------------------------------------------------- save / restore

    _ARRAYS = ("lts", "lkey", "bwd", "fwd", "q_next", "rts", "rkey", "last_r", "q_head",
               "q_tail")

    def snapshot(self) -> dict[str, Any]:
        return {"keys": list(self.keys.values),
                "arrays": {a: getattr(self, a).copy() for a in self._ARRAYS},
                "left_tab": self.left_tab, "right_tab": self.right_tab,
                "scalars": {"l_proc": self.l_proc, "cap": self.cap, "kept": self.kept,
                            "r_applied": self.r_applied, "ended": dict(self.ended),
                            "last_ts": dict(self.last_ts), "rows_in": dict(self.rows_in)}}

    def restore(self, saved: dict[str, Any]) -> None:
        self.keys = KeyIndex()
        for value in saved["keys"]:
            self.keys.ids[value] = len(self.keys.values)
            self.keys.values.append(value)
        for a, v in saved["arrays"].items():
            setattr(self, a, v.copy())
        self.left_tab, self.right_tab = saved["left_tab"], saved["right_tab"]
        s = saved["scalars"]
        self.l_proc, self.cap, self.r_applied = s["l_proc"], s["cap"], s["r_applied"]
        self.kept = s["kept"]
        self.ended, self.last_ts = dict(s["ended"]), dict(s["last_ts"])
        self.rows_in = dict(s["rows_in"])
