"""A deferred checkpoint's interval counts from the end of its write, so that writes longer
than the interval (rocksdict holds the GIL) do not run back to back."""

from __future__ import annotations

import time
from pathlib import Path

from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.state.recovery import Checkpointer, StateSnapshot

JOB = """
name: spacing
mode: research
sources: [{{id: ticks, kind: simulator, rows: 100, symbols: 2}}]
steps: [{{kernel: ema, params: {{span: 5}}}}]
sinks: []
state: {{backend: rocksdb, path: {tmp}/state, checkpoint: {{every: 200ms}}}}
"""


def test_the_next_checkpoint_is_due_an_interval_after_the_write_ends(tmp_path: Path,
                                                                      monkeypatch) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(tmp=tmp_path))
    checkpointer = Checkpointer(compile_job(load_job(path)))
    assert checkpointer.every_s == 0.2

    def slow_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # longer than the interval

    monkeypatch.setattr(checkpointer, "_write", slow_write)
    checkpointer.pending = ("token", [], checkpointer._fields(), StateSnapshot(keys=[]), None)
    checkpointer._since = 0
    checkpointer._last = time.monotonic()
    assert checkpointer.settle([], wait=True) == ["token"]
    checkpointer.advance(10, None)
    assert not checkpointer.overdue(), "due at once after a write longer than the interval"
    time.sleep(0.25)
    assert checkpointer.overdue()
