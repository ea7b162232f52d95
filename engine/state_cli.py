"""``run-job state JOB``: what a job's checkpoints hold, without running it.

Lists every checkpoint (number, status, rows done, keys, size on disk), the per-step state
sizes and first keys of the chosen one, and with ``--key`` prints one key's state field by field.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tickflow.engine.checkpoint import CheckpointStore, Manifest, state_root
from tickflow.engine.errors import StateError
from tickflow.engine.state.backend import get_backend


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def _value(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return repr(arr.item())
    flat = arr.ravel()
    head = ", ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in flat[:8].tolist())
    more = f", ... ({flat.size} values)" if flat.size > 8 else ""
    return f"[{head}{more}]"


def cmd_state(job: Any, args: argparse.Namespace) -> int:
    """Print the job's checkpoints; exit 1 (StateError) when there is nothing to show."""
    state = job.spec.state
    backend = get_backend(state.backend)
    root = state_root(job.spec.name, state.path)
    store = CheckpointStore(root)
    entries = store.list()
    if not backend.is_persistent:  # the job says memory; a run may have used --state-backend
        recorded = _recorded_backend(store, entries)
        if recorded is None:
            raise StateError(f"job '{job.spec.name}' uses the memory state backend and has no "
                             f"checkpoints under {store.dir}: nothing is saved (run it with "
                             f"--state-backend rocksdb|tiledb, or set state.backend)")
        backend = get_backend(recorded)
    if not entries:
        raise StateError(f"job '{job.spec.name}' has no checkpoints under {store.dir}")
    print(f"checkpoints of job '{job.spec.name}' in {store.dir} ({backend.name} backend):")
    good: dict[int, Manifest] = {}
    for seq, path in entries:
        try:
            m = store.verify(path)
            good[seq] = m
            status = "final" if m.is_final else "good"
            print(f"  {seq:>6}  {status:<5}  {m.created}  rows {m.rows:>14,}  "
                  f"keys {m.n_keys:>9,}  {_size(m.size_bytes()):>10}  ({m.backend})")
        except StateError as exc:
            print(f"  {seq:>6}  BAD    {exc}")
    if not good:
        raise StateError("no good checkpoint to show")
    seq = args.checkpoint if args.checkpoint is not None else max(good)
    if seq not in good:
        raise StateError(f"checkpoint {seq} is not a good checkpoint of this job "
                         f"(good: {', '.join(map(str, sorted(good)))})")
    manifest = good[seq]
    path = store.dir / f"{seq:08d}"
    print(f"checkpoint {seq}: {manifest.n_keys:,} keys, state {_size(manifest.state_bytes)} in "
          f"RAM, source positions {manifest.sources}, sink positions {manifest.sinks}")
    if manifest.page_keys:
        pages = len({p.parts[1] for p in map(Path, manifest.files) if p.parts[0] == "pages"})
        print(f"  paged: {pages:,} pages of up to {manifest.page_keys:,} keys "
              f"({_size(manifest.size_bytes())} on disk)")
    for sid, fields in manifest.step_layout().items():
        rows = manifest.step_rows.get(sid, manifest.n_keys)
        per_key = sum(np.dtype(f.dtype).itemsize * f.size for f in fields)
        print(f"  step {sid:<28} {len(fields):>3} fields  {per_key:>8,} B/key  "
              f"{_size(per_key * rows):>10}")
    from tickflow.engine.checkpoint import KEYS_FILE, read_keys

    keys = read_keys(path / KEYS_FILE)
    if args.keys:
        shown = ", ".join(map(str, keys[:args.keys]))
        more = f", ... ({len(keys):,} keys)" if len(keys) > args.keys else ""
        print(f"keys: {shown}{more}")
    if args.key is not None:
        _print_key(store, backend, path, manifest, keys, args.key)
    return 0


def _recorded_backend(store: CheckpointStore, entries: list[Any]) -> str | None:
    """The backend the newest readable checkpoint was written with, if any."""
    for _seq, path in reversed(entries):
        try:
            return store.verify(path).backend
        except StateError:
            continue
    return None


def _print_key(store: CheckpointStore, backend: Any, path: Any, manifest: Manifest,
               keys: list[Any], key: str) -> None:
    lookup = {str(k): i for i, k in enumerate(keys)}
    if key not in lookup:
        from tickflow.engine.registry import close_matches, did_you_mean

        hint = did_you_mean(close_matches(key, list(lookup)))
        raise StateError(f"key {key!r} is not in checkpoint {manifest.seq}{hint}")
    kid = lookup[key]
    if manifest.page_keys:
        from tickflow.engine.state.paging import read_paged_key

        steps = read_paged_key(backend, path, manifest.page_keys, kid)
    else:
        steps = store.load(backend, path, manifest, key_ids=np.array([kid])).steps
    print(f"state of key {key!r} (key id {kid}):")
    for sid, fields in steps.items():
        print(f"  {sid}:")
        for name, arr in fields.items():
            print(f"    {name} = {_value(arr[0])}")
