"""``StreamGraph.warm``: a live run loads its kernels before the first tick, on a throwaway
pipeline, so the job's own state, keys and signal counts are untouched."""

from __future__ import annotations

import pyarrow as pa

from tests.conftest import ROOT
from tickflow.connectors.base import CANONICAL_TICK_SCHEMA
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.runtime.graph import StreamGraph, made_up_row
from tickflow.engine.step import BoundKernel


def test_warm_runs_every_kernel_and_leaves_the_state_alone(monkeypatch) -> None:
    job = compile_job(load_job(ROOT / "jobs" / "live.yaml"))
    graph = StreamGraph(job, 1)
    graph.bind({u.label: CANONICAL_TICK_SCHEMA for u in job.sources})
    ran: list[str] = []
    run = BoundKernel.run

    def counted(self: BoundKernel, key, ts, inputs, state, key_ids=(), n_keys=None):  # type: ignore[no-untyped-def]
        if len(key):
            ran.append(self.step_id)
        return run(self, key, ts, inputs, state, key_ids, n_keys)

    monkeypatch.setattr(BoundKernel, "run", counted)
    graph.warm()
    main = graph.main_pipeline
    assert main is not None
    steps = [s.step_id for s in main.lanes[0].steps]
    assert sorted(ran) == sorted(steps) and len(steps) > 10  # each kernel, over one row
    assert len(main.keys) == 0
    assert all(st.n_keys == 0 for st in main.lanes[0].states)
    assert set(main.signal_counts.values()) == {0}


def test_made_up_row_fits_its_schema() -> None:
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("price", pa.float64()),
                        ("symbol", pa.dictionary(pa.int32(), pa.string())),
                        ("venue", pa.string()), ("n", pa.int32()), ("flag", pa.bool_()),
                        ("tags", pa.list_(pa.string()))])
    row = made_up_row(schema)
    assert row.schema == schema and row.num_rows == 1
    assert row.column("price").to_pylist() == [1.0]
    assert row.column("tags").to_pylist() == [None]
