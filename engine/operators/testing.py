"""Public helpers that prove an operator honours the operator contract (built-in or a user's).

    from tickflow.engine.operators.testing import bind, run_operator
    bars = run_operator("resample_ohlc", {"in": ticks}, params={"interval": "1m"})
    cut = run_operator("resample_ohlc", {"in": ticks}, params={"interval": "1m"},
                       chunks={"in": [100, 250]}, restore_at=2)
    assert cut.equals(bars)

``chunks`` cuts each input into batches at the given row indices, ``schedule`` says which
input's next batch is pushed at each turn (any interleaving must give the same rows), and
``restore_at`` saves the state after that many pushes, pickles it, and continues in a fresh
operator restored from it.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from tickflow.engine.operators.base import OPERATORS, BoundOperator, Operator


def bind(name: str, columns: Mapping[str, Sequence[str]], *, params: Mapping[str, Any] | None
         = None, key: str = "symbol", inputs: Sequence[str] | None = None,
         outputs: Sequence[str] | None = None) -> BoundOperator:
    """Bind a registered operator to input streams named after its ports."""
    import tickflow.engine.operators  # noqa: F401  (registers the built-ins)

    definition = OPERATORS.get(name)
    p = definition.params(**(params or {}))
    op_key = getattr(p, "key", None) or getattr(p, "by", None) or key
    bound = BoundOperator(name, definition, p, tuple(inputs or definition.inputs),
                          tuple(outputs or definition.outputs),
                          {port: port for port in definition.cls.ports}, op_key)
    bound.columns = tuple(definition.cls.check(bound, {k: list(v) for k, v in
                                                       columns.items()}))
    return bound


def _batches(table: pa.Table, cuts: Sequence[int]) -> list[pa.RecordBatch]:
    n = table.num_rows
    bounds = [0, *sorted({c for c in cuts if 0 < c < n}), n]
    out = []
    for a, b in itertools.pairwise(bounds):
        part = table.slice(a, b - a).combine_chunks()
        out.extend(part.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)])
    return out


def run_operator(name: str | BoundOperator, tables: Mapping[str, pa.Table], *,
                 params: Mapping[str, Any] | None = None, key: str = "symbol",
                 chunks: Mapping[str, Sequence[int]] | None = None,
                 schedule: Sequence[str] | None = None, restore_at: int | None = None,
                 ) -> pa.Table:
    """Push the inputs through an operator and return every output row as one table."""
    bound = name if isinstance(name, BoundOperator) else bind(
        name, {p: t.schema.names for p, t in tables.items()}, params=params, key=key)
    schemas = {p: t.schema for p, t in tables.items()}
    op: Operator = bound.make()
    schema = op.bind(schemas)
    queues = {p: _batches(t, (chunks or {}).get(p, ())) for p, t in tables.items()}
    order = list(schedule or [])
    for p, q in queues.items():  # whatever the schedule leaves out comes last, port by port
        order += [p] * max(0, len(q) - order.count(p))
    out: list[pa.RecordBatch] = []
    pushes = 0
    for port in order:
        if not queues[port]:
            continue
        out += op.push(port, queues[port].pop(0))
        pushes += 1
        if restore_at is not None and pushes == restore_at:
            saved = pickle.loads(pickle.dumps(op.snapshot()))
            op = bound.make()
            op.bind(schemas)
            op.restore(saved)
    for port in tables:
        out += op.end(port)
    return pa.Table.from_batches(out, schema=schema)


def assert_tables_equal(got: pa.Table, expected: pa.Table) -> None:
    """Same schema and the same values, bit for bit (NaN equals NaN, null equals null)."""
    import numpy as np

    assert got.schema == expected.schema, f"{got.schema} != {expected.schema}"
    assert got.num_rows == expected.num_rows, f"{got.num_rows} != {expected.num_rows} rows"
    for name in expected.schema.names:
        a, b = got.column(name), expected.column(name)
        assert a.is_null().to_pylist() == b.is_null().to_pylist(), f"{name}: nulls differ"
        if pa.types.is_floating(a.type):
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=name)
        else:
            assert a.to_pylist() == b.to_pylist(), f"{name} differs"
