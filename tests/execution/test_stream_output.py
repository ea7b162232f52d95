"""A stream's sinks each on their own writer thread: every sink gets every batch in order, a
failing sink fails the run with its own error, and no writer thread is left running."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tickflow.engine.compile import compile_job
from tickflow.engine.errors import SinkError
from tickflow.engine.loader import load_job
from tickflow.engine.runtime.driver import Driver, StreamOutput


class Recorder:
    """A sink that keeps what it was given, and on which thread."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.firsts: list[int] = []
        self.threads: set[int] = set()
        self.closed = False

    def open(self, schema: pa.Schema) -> None:
        pass

    def write(self, batch: pa.RecordBatch) -> None:
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and len(self.firsts) == self.fail_at:
            raise SinkError("the disk is full")
        self.firsts.append(batch.column("i")[0].as_py())

    def close(self) -> str | None:
        self.closed = True
        return None


def _batches(n: int) -> list[pa.RecordBatch]:
    return [pa.record_batch({"i": pa.array([k, k], pa.int64())}) for k in range(n)]


def _writer_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("tickflow-write")}


def test_each_sink_gets_every_batch_in_order_on_its_own_thread() -> None:
    sinks = [Recorder(), Recorder(), Recorder()]
    out = StreamOutput(sinks, pa.schema([("i", pa.int64())]))
    for batch in _batches(50):
        out.put(batch)
    out.finish()
    for sink in sinks:
        assert sink.firsts == list(range(50))
    threads = [next(iter(s.threads)) for s in sinks]
    assert all(len(s.threads) == 1 for s in sinks)
    assert len(set(threads)) == 3  # one writer thread per sink
    assert not _writer_threads()


def test_a_failing_sink_raises_its_error_and_ends_every_writer() -> None:
    good, bad = Recorder(), Recorder(fail_at=3)
    out = StreamOutput([good, bad], pa.schema([("i", pa.int64())]))
    with pytest.raises(SinkError, match="the disk is full"):
        for batch in _batches(40):
            out.put(batch)
        out.finish()
    out.stop()  # the driver's clean-up after a failure
    assert good.firsts[:3] == [0, 1, 2]
    assert not _writer_threads()


class Preparing(Recorder):
    """A sink whose close can be prepared (as the report's is) while another sink still writes."""

    def __init__(self, slow: threading.Event | None = None, fail: bool = False):
        super().__init__()
        self.slow, self.fail = slow, fail
        self.prepared_on: int | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        super().write(batch)
        if self.slow is not None and batch.column("i")[0].as_py() == 4:
            assert self.slow.wait(10)  # the last batch waits until the other sink prepared

    def prepare_close(self) -> None:
        if self.fail:
            raise ValueError("left for close to raise")
        self.prepared_on = threading.get_ident()


def test_a_writer_prepares_its_close_while_another_still_writes() -> None:
    prepared = threading.Event()
    quick = Preparing()
    original = quick.prepare_close
    quick.prepare_close = lambda: (original(), prepared.set())  # type: ignore[method-assign]
    slow, failing = Recorder(), Preparing(fail=True)
    slow_writer = Preparing(slow=prepared)
    out = StreamOutput([slow_writer, quick, failing, slow], pa.schema([("i", pa.int64())]))
    for batch in _batches(5):
        out.put(batch)
    out.finish()  # before, the quick writer was told to end only once the slow one had ended
    assert quick.prepared_on == next(iter(quick.threads))  # on its own writer thread
    assert slow_writer.prepared_on == next(iter(slow_writer.threads))
    assert failing.prepared_on is None and failing.firsts == list(range(5))
    assert not any(s.closed for s in (quick, slow, failing, slow_writer))  # closes are the run's
    assert not _writer_threads()


def test_no_close_is_prepared_after_a_failed_write() -> None:
    bad = Preparing()
    bad.fail_at = 2
    out = StreamOutput([bad], pa.schema([("i", pa.int64())]))
    with pytest.raises(SinkError):
        for batch in _batches(5):
            out.put(batch)
        out.finish()
    out.stop()
    assert bad.prepared_on is None
    assert not _writer_threads()


def test_inline_sinks_are_written_by_the_caller() -> None:
    inline, threaded = Recorder(), Recorder()
    out = StreamOutput([inline, threaded], pa.schema([("i", pa.int64())]),
                       inline=lambda s: s is inline)
    for batch in _batches(5):
        out.put(batch)
    out.finish()
    assert inline.threads == {threading.get_ident()}
    assert threaded.threads and threaded.threads != inline.threads
    assert threaded.firsts == inline.firsts == list(range(5))


def test_a_run_with_a_failing_sink_fails_and_keeps_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("""\
name: failing-sink
mode: research
sources:
  - kind: simulator
    rows: 5000
    symbols: 3
    seed: 1
steps:
  - kernel: log_returns
""")
    job: Any = compile_job(load_job(path))
    good, bad = Recorder(), Recorder(fail_at=2)
    # the recorders read column "i": give them the row index under that name
    for sink in (good, bad):
        sink.write = _indexed(sink.write)  # type: ignore[method-assign]
    driver = Driver(job, morsel_rows=500, sinks=[(good, job.main_stream),
                                                (bad, job.main_stream)])
    with pytest.raises(SinkError, match="the disk is full"):
        driver.run()
    assert not _writer_threads()
    assert not good.closed and not bad.closed  # a failed run does not publish


def _indexed(write: Any) -> Any:
    def indexed(batch: pa.RecordBatch) -> None:
        write(pa.record_batch({"i": pa.array([batch.num_rows], pa.int64())}))
    return indexed
