"""Between the executor's lanes and a backend: gather state by global key id, scatter it back.

The local executor shards keys over ``w`` lanes (global id ``g`` lives in lane ``g % w`` at local
id ``g // w``). Checkpoints store state by global id, so a job restarted with another worker
count still finds every key's state. Each key is saved at its own width tier's width: a step's
own rows hold tier 0, and each wider tier's keys go to a step ``<step>@w<width>`` with their
ids (:func:`~tickflow.engine.state.backend.side_step_id`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickflow.engine.state.arrays import KernelState
from tickflow.engine.state.backend import TIER_KEY, StateSnapshot, side_of, side_step_id
from tickflow.engine.state.tiers import fit


def gather(pipeline: Any) -> StateSnapshot:
    """Every stateful part of a pipeline as one snapshot keyed by global key id.

    Per-key steps are sharded over lanes and stacked back by global id; a cross-key step's
    single group row (lane 0) is stored with one row; keyed signal rules (``prev``,
    ``crosses_above``) are stored as pseudo-steps ``signal.<name>``.
    """
    keys = list(pipeline.keys.values)
    lanes = pipeline.lanes
    n, w = len(keys), len(lanes)
    snapshot = StateSnapshot(keys=keys)
    for j, step in enumerate(lanes[0].steps):
        if step.is_cross_key:
            st = lanes[0].states[j]
            st.ensure_keys(1)
            snapshot.steps[step.step_id] = st.snapshot(np.arange(1))
            continue
        states: list[KernelState] = [lane.states[j] for lane in lanes]
        parts = [st.snapshot_tiers(len(range(s, n, w))) for s, st in enumerate(states)]
        snapshot.steps[step.step_id] = _interleave(states[0], [p for p, _ in parts], n)
        groups: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
        for s, (_, side) in enumerate(parts):
            for width, (local, values) in side.items():
                groups.setdefault(width, []).append((local * w + s, values))
        for width, items in sorted(groups.items()):
            snapshot.steps[side_step_id(step.step_id, width)] = _side_rows(states[0], items)
    for name, st in rule_states(pipeline).items():
        st.ensure_keys(n)
        snapshot.steps[f"signal.{name}"] = st.snapshot(np.arange(n))
    return snapshot


def _widest(st: KernelState, parts: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Parts (of lanes, or of one width's side tiers) at the widest one's widths."""
    widths = {f.name: max(p[f.name].shape[-1] for p in parts)
              for f in st.saved if f.grow is not None}
    return [fit(st.saved, p, widths) for p in parts]


def _interleave(st: KernelState, parts: list[dict[str, np.ndarray]],
                n: int) -> dict[str, np.ndarray]:
    """Lanes' rows stacked back by global id (lane ``s`` holds ids ``s, s + w, ...``)."""
    w = len(parts)
    if w == 1:
        return parts[0]
    parts = _widest(st, parts)  # lanes' buffers may differ in width
    fields: dict[str, np.ndarray] = {}
    for f in st.saved:
        first = parts[0][f.name]
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for s, part in enumerate(parts):
            out[s::w] = part[f.name]
        fields[f.name] = out
    return fields


def _side_rows(st: KernelState, items: list[tuple[np.ndarray, dict[str, np.ndarray]]]
               ) -> dict[str, np.ndarray]:
    """One width's side rows of every lane, in global key id order, with their ids."""
    ids = np.concatenate([i for i, _ in items])
    parts = _widest(st, [v for _, v in items]) if len(items) > 1 else [items[0][1]]
    order = np.argsort(ids, kind="stable")
    fields = {TIER_KEY: ids[order]}
    for f in st.saved:
        fields[f.name] = np.concatenate([p[f.name] for p in parts])[order]
    return fields


def rule_states(pipeline: Any) -> dict[str, KernelState]:
    """The pipeline's keyed signal rules' states (those that remember anything)."""
    return {name: st for name, st in pipeline.rule_states.items()
            if st.fields}


def scatter(pipeline: Any, snapshot: StateSnapshot) -> None:
    """Load a snapshot into a pipeline: key index, lanes' arrays and signal rules' memory."""
    pipeline.keys.ids = {v: i for i, v in enumerate(snapshot.keys)}
    pipeline.keys.values = list(snapshot.keys)
    n, lanes = snapshot.n_keys, pipeline.lanes
    w = len(lanes)
    for j, step in enumerate(lanes[0].steps):
        saved = snapshot.steps[step.step_id]
        if step.is_cross_key:
            lanes[0].states[j].restore(np.arange(1), saved)
            continue
        for s, lane in enumerate(lanes):
            count = len(range(s, n, w))
            if count:
                lane.states[j].restore(np.arange(count),
                                       {name: arr[s::w] for name, arr in saved.items()})
        for name, fields in snapshot.steps.items():  # keys saved apart, at their own width
            if side_of(name) != step.step_id:
                continue
            ids = fields[TIER_KEY]
            for s, lane in enumerate(lanes):
                sel = np.flatnonzero(ids % w == s)
                if sel.size:
                    lane.states[j].restore(ids[sel] // w, {k: v[sel] for k, v in fields.items()
                                                           if k != TIER_KEY})
    for name, st in rule_states(pipeline).items():
        if n:
            st.restore(np.arange(n), snapshot.steps[f"signal.{name}"])
