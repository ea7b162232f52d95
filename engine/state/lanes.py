"""Between the executor's lanes and a backend: gather state by global key id, scatter it back.

The local executor shards keys over ``w`` lanes (global id ``g`` lives in lane ``g % w`` at local
id ``g // w``). Checkpoints store state by global id, so a job restarted with another worker
count still finds every key's state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickflow.engine.state.arrays import KernelState
from tickflow.engine.state.backend import StateSnapshot
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
        parts = []
        for s, st in enumerate(states):
            count = len(range(s, n, w))
            st.ensure_keys(count)
            parts.append(st.snapshot(np.arange(count)))
        if w == 1:
            snapshot.steps[step.step_id] = parts[0]
            continue
        # lanes' buffers may differ in width: each is saved at the widest lane's
        widths = {f.name: max(p[f.name].shape[-1] for p in parts)
                  for f in states[0].saved if f.grow is not None}
        parts = [fit(states[0].saved, p, widths) for p in parts]
        fields: dict[str, np.ndarray] = {}
        for f in states[0].saved:
            first = parts[0][f.name]
            out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
            for s, part in enumerate(parts):
                out[s::w] = part[f.name]
            fields[f.name] = out
        snapshot.steps[step.step_id] = fields
    for name, st in rule_states(pipeline).items():
        st.ensure_keys(n)
        snapshot.steps[f"signal.{name}"] = st.snapshot(np.arange(n))
    return snapshot


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
    for name, st in rule_states(pipeline).items():
        if n:
            st.restore(np.arange(n), snapshot.steps[f"signal.{name}"])
