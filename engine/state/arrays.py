"""State arrays for one kernel step: one array per declared field, first axis = key id."""

from __future__ import annotations

import numpy as np

from tickflow.engine.state.census import census, overflowing, raise_to
from tickflow.engine.state.tiers import Tier, fit, zeros
from tickflow.kernels.base import Field

_NO_TIERS = np.zeros(0, dtype=np.int8)
"""``tier_of`` for the census while every key lives in tier 0."""

PER_ROW_START = 8
"""First width of a per-row buffer (``Field.per_row``); it doubles, up to the window, as the
keys' row counts need."""

WIDEN_SHARE = 8
"""Tier 0 doubles once one key in ``WIDEN_SHARE`` needs more than its width. At half (2),
where doubling costs no more memory than the side tier (a side key keeps a dead row in tier 0
too), half the keys went to a side tier and back before tier 0 widened: at 100,000 keys 1.2M
moves and folds a run. At a quarter they halved (whole process 0.94x CPU); at an eighth they
halve again (632,000 -> 306,000 moves; ``reserve`` 1.5 -> 0.9 s a run). The price is
tier 0 held wide where the share of wide keys stays between an eighth and a half: at most
1.6x those fields' size at the narrower width with the wide keys in a side tier. On the
100,000-symbol input the state ends the same (509.8 MB: under an eighth of the keys need more
than 32 there), on a skewed one (symbols drawn with weights 1/rank^0.6) 558 MB instead of
541 (autocorr 32 wide instead of 16; docs/performance.md, "The peak at 100K keys")."""


class KernelState:
    """Holds a step's per-key state arrays and grows them as keys and time windows grow.

    The kernel only sees the arrays; whether they came from memory, RocksDB or TileDB is the
    backend's business (it reads and writes ``snapshot``/``restore``).

    Per-row buffers (row windows, ``Field.per_row``) are sized by the keys' row counts, per
    key rather than by the busiest key: tier 0 holds every key (indexed by key id) at one
    width, and a key whose ``{group}_count`` plus its rows in the next chunk would not fit
    moves to a side tier twice as wide or more (its rows copied, rings re-laid), where the
    kernel runs on that tier's arrays with tier-local ids (:meth:`route`). When a quarter of
    the keys need more than tier 0's width (``WIDEN_SHARE``), tier 0 doubles instead and
    takes back the side tiers it now covers, so a few symbols that all fill their windows run
    on tier 0 alone, as before.
    At 100,000 keys of a few dozen ticks, a 100-row window then costs about a third of its
    size. A kernel sees the same values in the same order at any width or tier, so outputs
    do not change.

    Args:
        tiered: False keeps every key in tier 0 (a cross-key step's single state row).
    """

    def __init__(self, fields: list[Field], n_keys: int = 0, tiered: bool = True):
        self.fields = fields
        self.saved = [f for f in fields if not f.stub]  # stubs hold nothing and are not saved
        self.per_row = [f for f in fields if f.per_row]
        self._per_row_counts = sorted({f"{f.group}_count" for f in self.per_row})
        self._per_row_full = max((f.shape[-1] for f in self.per_row), default=0)
        self.tiered = tiered
        self.tiers = [Tier(fields, min(PER_ROW_START, self._per_row_full), max(n_keys, 8))]
        self.side: dict[int, int] = {}  # side tier width -> index in self.tiers
        self.tier_of: np.ndarray | None = None  # key id -> tier (only once a side tier exists)
        self.local = np.zeros(0, dtype=np.int64)  # key id -> row in its side tier
        self.n_side = 0  # keys living in a side tier
        self.n_keys = 0

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Tier 0's arrays (every key's, when no side tier is in use)."""
        return self.tiers[0].arrays

    @property
    def width(self) -> int:
        return self.tiers[0].width

    @property
    def capacity(self) -> int:
        if not self.fields:
            return 1 << 62
        return self.tiers[0].capacity

    def ensure_keys(self, n_keys: int) -> None:
        """Make room for key ids < n_keys; new keys start from each field's fill value."""
        t0 = self.tiers[0]
        if n_keys > t0.filled:
            maps = n_keys > t0.capacity and self.tier_of is not None
            t0.ensure_rows(n_keys)
            if maps:
                self._grow_maps()
        self.n_keys = max(self.n_keys, n_keys)

    def make_room(self, n_keys: int) -> None:
        """Room for key ids < n_keys (at their fill values) without adding any key: a live
        job's warm-up, so that its first batch does not regrow every array (1 ms of 2)."""
        n = self.n_keys
        self.ensure_keys(n_keys)
        self.n_keys = n

    def _grow_maps(self) -> None:
        cap = self.capacity
        self.tier_of = zeros(cap, np.int8, self.tier_of)
        self.local = zeros(cap, np.int64, self.local)

    # ------------------------------------------------------------------ tiers

    def _widths_of(self, keys: np.ndarray) -> np.ndarray:
        widths = np.array([t.width for t in self.tiers], dtype=np.int64)
        if self.tier_of is None:
            return np.full(keys.size, widths[0])
        return widths[self.tier_of[keys]]

    def reserve(self, key: np.ndarray) -> None:
        """Make room for the rows of ``key`` (this chunk): no per-row buffer can fill up.

        Costs what the chunk holds (engine/state/census.py): its keys' rows are counted in
        one pass and only its distinct keys' counts are read, not the whole key axis.
        """
        t0 = self.tiers[0]
        if not self.per_row or key.size == 0 or (t0.width >= self._per_row_full
                                                 and not self.n_side):
            return
        n = min(self.n_keys, t0.filled)
        uniq, rows = census(key, n)
        tier_of = self.tier_of if self.n_side else _NO_TIERS
        need = np.zeros(uniq.size, dtype=np.int64)
        for i, tier in enumerate(self.tiers):
            for name in self._per_row_counts:
                raise_to(need, uniq, tier_of, i, self.local, tier.arrays[name])
            if tier_of is _NO_TIERS:
                break
        need += rows
        widths = np.array([t.width for t in self.tiers], dtype=np.int64)
        over = overflowing(need, uniq, tier_of, widths)
        if over.size:
            order = np.argsort(uniq[over], kind="stable")  # key order, as a census by id
            self._place(uniq[over][order], need[over][order])

    def _target(self, need: np.ndarray) -> np.ndarray:
        """The tier width for each need: tier 0's if it fits, else a power of two (or full)."""
        w0 = self.tiers[0].width
        pow2 = np.left_shift(1, np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64))
        side = np.minimum(np.maximum(pow2, PER_ROW_START), self._per_row_full)
        return np.where(need <= w0, w0, side)

    def _place(self, keys: np.ndarray, need: np.ndarray) -> None:
        """Give ``keys`` (currently holding their state) tiers wide enough for ``need``."""
        self._settle(keys, need)
        target = self._target(need)
        moving = target != self._widths_of(keys)
        if moving.any():
            self._move(keys[moving], target[moving])

    def _settle(self, keys: np.ndarray, need: np.ndarray) -> None:
        """Widen tier 0 while ``1 / WIDEN_SHARE`` of the keys would need more than its width
        (or always, when untiered), taking back the side tiers it then covers."""
        t0 = self.tiers[0]
        full = self._per_row_full
        while t0.width < full:
            if self.tiered:
                in_side = self.n_side - (int(np.count_nonzero(self.tier_of[keys]))
                                         if self.tier_of is not None else 0)
                outside = in_side + int(np.count_nonzero(need > t0.width))
                if WIDEN_SHARE * outside < max(self.n_keys, 1):
                    return
            elif int(need.max(initial=0)) <= t0.width:
                return
            t0.widen(min(2 * t0.width, full))
            for width in sorted(w for w in self.side if w <= t0.width):
                self._fold(width)

    def _fold(self, width: int) -> None:
        """Move a side tier's live keys back into tier 0 and drop the tier."""
        index = self.side.pop(width)
        tier = self.tiers[index]
        assert self.tier_of is not None
        rows = np.flatnonzero(self.tier_of[tier.keys[:tier.size]] == index)
        rows = rows[self.local[tier.keys[rows]] == rows]
        keys = tier.keys[rows]
        self.tiers[0].put(self.saved, keys, tier.rows(self.saved, rows))
        self.tier_of[keys] = 0
        self.n_side -= keys.size
        self._drop(index)

    def _drop(self, index: int) -> None:
        """Remove tier ``index`` (no live keys) and renumber the tiers after it."""
        del self.tiers[index]
        assert self.tier_of is not None
        self.tier_of[self.tier_of > index] -= 1
        self.side = {w: (i - 1 if i > index else i) for w, i in self.side.items()}

    def _take(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """The saved fields' rows of ``keys`` from whichever tier holds each (max widths)."""
        tiers = self.tier_of[keys] if self.tier_of is not None else np.zeros(keys.size, np.int8)
        present = np.unique(tiers)
        if present.size == 1:
            i = int(present[0])
            local = keys if i == 0 else self.local[keys]
            return self.tiers[i].rows(self.saved, local)
        widths = {name: max(self.tiers[i].widths()[name] for i in present)
                  for name in self.tiers[0].widths()}
        out = {f.name: np.empty((keys.size, *self.tiers[0].arrays[f.name].shape[1:-1],
                                 widths[f.name]) if f.grow is not None else
                                (keys.size, *self.tiers[0].arrays[f.name].shape[1:]),
                                dtype=f.dtype) for f in self.saved}
        for i in present:
            sel = np.flatnonzero(tiers == i)
            local = keys[sel] if i == 0 else self.local[keys[sel]]
            part = fit(self.saved, self.tiers[i].rows(self.saved, local), widths)
            for f in self.saved:
                out[f.name][sel] = part[f.name]
        return out

    def _move(self, keys: np.ndarray, widths: np.ndarray) -> None:
        """Copy ``keys``' state into the tiers of the given widths (side tiers)."""
        values = self._take(keys)
        self._put(keys, widths, values)

    def _put(self, keys: np.ndarray, widths: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Write saved rows of ``keys`` into the tier of each one's width (tier 0 or a side)."""
        if self.tier_of is None:
            self._grow_maps()
        assert self.tier_of is not None
        old = self.tier_of[keys].copy()
        for i in np.unique(old[old > 0]):  # rows left behind in side tiers
            self.tiers[int(i)].release(self.local[keys[old == i]])
        self.n_side -= int(np.count_nonzero(old))
        w0 = self.tiers[0].width
        for width in np.unique(widths):
            sel = np.flatnonzero(widths == width)
            part = {name: v[sel] for name, v in values.items()}
            if width <= w0:
                self.tiers[0].put(self.saved, keys[sel], part)
                self.tier_of[keys[sel]] = 0
                continue
            index = self.side.get(int(width))
            if index is None:
                index = self.side[int(width)] = len(self.tiers)
                self.tiers.append(Tier(self.fields, int(width), side=True))
            self.local[keys[sel]] = self.tiers[index].append(self.saved, keys[sel], part)
            self.tier_of[keys[sel]] = index
            self.n_side += sel.size
        empty = [w for w, i in self.side.items() if self.tiers[i].live == 0]
        while empty:  # side tiers whose keys all moved on
            self._drop(self.side.pop(empty[0]))
            empty = [w for w, i in self.side.items() if self.tiers[i].live == 0]

    def route(self, key: np.ndarray) -> list[tuple[Tier, np.ndarray | None, np.ndarray]]:
        """The tiers this chunk's rows run on: (tier, rows or None for all, tier-local ids)."""
        if not self.n_side:
            return [(self.tiers[0], None, key)]
        assert self.tier_of is not None
        tiers = self.tier_of[key]
        if not tiers.any():
            return [(self.tiers[0], None, key)]
        parts = []
        for i, tier in enumerate(self.tiers):
            idx = np.flatnonzero(tiers == i)
            if idx.size:
                k = key[idx]
                parts.append((tier, idx, k if i == 0 else self.local[k]))
        return parts

    # ------------------------------------------------------------------ growth (tier 0)

    def grow_buffers(self, tier: Tier | None = None) -> bool:
        """A kernel stopped on a full buffer of ``tier`` (tier 0 by default): double its
        time-window buffers; tier 0 also widens its per-row ones (up to the window).
        False when nothing could grow."""
        tier = tier or self.tiers[0]
        before = tier.widths()
        if tier is self.tiers[0] and tier.width < self._per_row_full:
            tier.widen(min(2 * tier.width, self._per_row_full))
        tier.grow_time()
        return tier.widths() != before

    def widths(self) -> dict[str, int]:
        """The last-axis width of every growable buffer of tier 0."""
        return self.tiers[0].widths()

    def grow_to(self, widths: dict[str, int]) -> None:
        """Grow tier 0 until every growable buffer is at least as wide as in ``widths``."""
        self.tiers[0].grow_to(widths, self._per_row_full)

    def ordered(self, tier: Tier | None = None) -> list[np.ndarray]:
        arrays = (tier or self.tiers[0]).arrays
        return [arrays[f.name] for f in self.fields]

    def nbytes(self) -> int:
        """Bytes in use: the maps' rows past the keys in use are never written (room to grow)."""
        n = self.n_keys
        return sum(t.nbytes() for t in self.tiers) + self.local[:n].nbytes + (
            self.tier_of[:n].nbytes if self.tier_of is not None else 0)

    def field_bytes(self) -> dict[str, int]:
        return {f.name: sum(t.field_bytes(f.name) for t in self.tiers) for f in self.fields}

    def describe(self) -> str:
        """Keys x per-row width of each tier (bench/state_memory.py)."""
        if not self.per_row:
            return ""
        parts = [f"{self.n_keys - self.n_side} x {self.tiers[0].width}"]
        parts += [f"{t.live} x {t.width}" for t in self.tiers[1:]]
        return ", ".join(parts)

    # ------------------------------------------------------------------ save / restore

    def snapshot(self, key_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the given keys' state, field by field (what a backend stores).

        Keys from tiers of different widths are saved at the widest one's widths, rings
        re-laid from their heads where they were widened.
        """
        key_ids = np.asarray(key_ids, dtype=np.int64)
        if not self.n_side or not key_ids.size:
            return {f.name: self.arrays[f.name][key_ids] for f in self.saved}  # (copies)
        return self._take(key_ids)

    def snapshot_tiers(self, count: int) -> tuple[dict[str, np.ndarray], dict[
            int, tuple[np.ndarray, dict[str, np.ndarray]]]]:
        """Keys ``0..count-1`` as saved, each at its own tier's width (what a checkpoint holds).

        Returns tier 0's rows (views, valid until the kernels run again) and, by side tier
        width, ``(key ids, copies of their rows)``. The tier-0 rows of keys living in a side
        tier are dead (never read again): they are reset to the fill values, so they read as
        fresh keys and a restore of the side rows puts the keys back where they belong.
        """
        self.ensure_keys(count)
        main = {f.name: self.arrays[f.name][:count] for f in self.saved}
        side: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        if not self.n_side or not count:
            return main, side
        assert self.tier_of is not None
        tier_of = self.tier_of[:count]
        for width, index in sorted(self.side.items()):
            keys = np.flatnonzero(tier_of == index)
            if keys.size:
                side[width] = (keys, self.tiers[index].rows(self.saved, self.local[keys]))
        moved = np.flatnonzero(tier_of)
        for f in self.saved:
            main[f.name][moved] = f.fill
        return main, side

    def restore(self, key_ids: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Load saved state (any widths) for the given keys into the tiers their counts need."""
        key_ids = np.asarray(key_ids, dtype=np.int64)
        if not len(key_ids):
            return
        self.ensure_keys(int(key_ids.max()) + 1)
        values = {f.name: values[f.name] for f in self.saved}
        if not self.per_row:
            self.tiers[0].put(self.saved, key_ids, values)
            return
        need = np.zeros(key_ids.size, dtype=np.int64)
        for name in self._per_row_counts:
            need = np.maximum(need, values[name])
        self._settle(key_ids, need)
        self._put(key_ids, self._target(need), values)

