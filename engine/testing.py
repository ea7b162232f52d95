"""Public helpers that prove a kernel honours the kernel contract (built-in or a user's).

Use them in tests::

    from tickflow.engine.testing import run_kernel, assert_split_invariant, assert_state_roundtrip
    out = run_kernel("ewma", {"price": prices}, keys=symbols, params={"alpha": 0.1})
    assert_split_invariant("ewma", {"price": prices}, keys=symbols, params={"alpha": 0.1})
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tickflow.engine.registry import KERNELS
from tickflow.engine.step import BoundKernel


def _bind(name: str, params: Mapping[str, Any] | None,
          inputs: Sequence[str] | None) -> BoundKernel:
    import tickflow.kernels  # noqa: F401  (registers the built-ins)

    definition = KERNELS.get(name)
    p = definition.params(**(params or {}))
    cols = tuple(inputs) if inputs else definition.inputs
    outs = tuple(definition.output_names(p, cols))
    return BoundKernel(name, definition, p, cols, outs)


def _prepare(data: Mapping[str, Any], keys: Any, ts: Any,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    if keys is None:
        key = np.zeros(n, dtype=np.int64)
    else:
        _, key = np.unique(np.asarray(keys), return_inverse=True)
        key = key.astype(np.int64)
    if ts is None:
        tsv = np.arange(n, dtype=np.int64) * 1_000_000
    else:
        arr = np.asarray(ts)
        if np.issubdtype(arr.dtype, np.datetime64):
            arr = arr.astype("datetime64[us]").astype(np.int64)
        tsv = arr.astype(np.int64)
    return key, tsv


def _key_ids(bound: BoundKernel, keys: Any) -> tuple[int, ...]:
    """A cross-key kernel's key ids: its key values' positions among the sorted keys."""
    if not bound.is_cross_key:
        return ()
    values = np.unique(np.asarray(keys)).tolist() if keys is not None else []
    lookup = {v: i for i, v in enumerate(values)}
    return tuple(lookup.get(v, -1) for v in bound.key_values)


def run_kernel(name: str, data: Mapping[str, Any], *, keys: Any = None, ts: Any = None,
               params: Mapping[str, Any] | None = None, inputs: Sequence[str] | None = None,
               splits: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """Run a registered kernel over columns, optionally cut into batches at ``splits``.

    Args:
        name: the registered kernel name.
        data: input columns by the kernel's input names (or by ``inputs``).
        keys: the key of each row (e.g. symbols); one key when omitted.
        ts: timestamps (datetime64 or int64 microseconds); 1 s apart when omitted.
        params: the step's params as in YAML.
        inputs: the input column names, when they differ from the kernel's defaults.
        splits: row indices where a new batch starts.

    Returns:
        The output columns by their (default) names.
    """
    bound = _bind(name, params, inputs)
    cols = [np.ascontiguousarray(np.asarray(data[c], dtype=np.float64))
            for c in bound.input_columns]
    n = len(cols[0]) if cols else len(np.asarray(ts if ts is not None else keys))
    key, tsv = _prepare(data, keys, ts, n)
    state = bound.new_state()
    ids = _key_ids(bound, keys)
    bounds = [0, *sorted(s for s in set(splits) if 0 < s < n), n]
    parts: list[list[np.ndarray]] = []
    for a, b in itertools.pairwise(bounds):
        parts.append(bound.run(key[a:b], tsv[a:b], [c[a:b] for c in cols], state, ids))
    return {o: np.concatenate([p[j] for p in parts]) if parts else np.empty(0)
            for j, o in enumerate(bound.output_columns)}


def assert_split_invariant(name: str, data: Mapping[str, Any], *, splits: Sequence[int],
                           **kwargs: Any) -> None:
    """Feeding the stream in batches cut at ``splits`` gives bit-identical output."""
    whole = run_kernel(name, data, **kwargs)
    cut = run_kernel(name, data, splits=splits, **kwargs)
    for col, expected in whole.items():
        np.testing.assert_array_equal(cut[col], expected,
                                      err_msg=f"{name}: column {col} differs with splits {splits}")


def assert_state_roundtrip(name: str, data: Mapping[str, Any], *, at: int, keys: Any = None,
                           ts: Any = None, params: Mapping[str, Any] | None = None,
                           inputs: Sequence[str] | None = None) -> None:
    """Save the state after ``at`` rows, restore it into a fresh kernel, and continue:
    the output must equal an uninterrupted run, bit for bit."""
    whole = run_kernel(name, data, keys=keys, ts=ts, params=params, inputs=inputs)
    bound = _bind(name, params, inputs)
    cols = [np.ascontiguousarray(np.asarray(data[c], dtype=np.float64))
            for c in bound.input_columns]
    n = len(cols[0]) if cols else len(np.asarray(ts if ts is not None else keys))
    key, tsv = _prepare(data, keys, ts, n)
    first = bound.new_state()
    key_ids = _key_ids(bound, keys)
    head = bound.run(key[:at], tsv[:at], [c[:at] for c in cols], first, key_ids)
    ids = np.arange(first.n_keys, dtype=np.int64)
    saved = first.snapshot(ids)
    second = bound.new_state()
    second.restore(ids, saved)
    tail = bound.run(key[at:], tsv[at:], [c[at:] for c in cols], second, key_ids)
    for j, col in enumerate(bound.output_columns):
        got = np.concatenate([head[j], tail[j]])
        np.testing.assert_array_equal(got, whole[col],
                                      err_msg=f"{name}: column {col} differs after restore")


def run_pipeline(job: Any, workers: int = 1, morsel_rows: int = 65_536) -> Any:
    """A compiled single-stream job's output as one Arrow table, computed by the local
    executor's ``Pipeline`` from its first source in morsels of ``morsel_rows`` (no sinks):
    what a test compares across worker counts and morsel sizes."""
    import pyarrow as pa

    from tickflow.engine.runtime.pipeline import Pipeline

    use = job.sources[0]
    source = use.definition.cls(use.config, job.context)
    pipeline = Pipeline(job, workers)
    try:
        return pa.Table.from_batches([pipeline.process(b)
                                      for b in source.batches(None, morsel_rows)])
    finally:
        pipeline.close()
        source.close()
