"""The one driver: sources -> quality stage -> graph -> writers -> sinks, in every mode.

Executors only decide where a :class:`Driver` runs (threads here, a Kafka-consuming process
live, a Dask task on a key partition, a backtest whose fill simulator is a sink). What differs
between them is given as hooks, not written again:

- ``checkpointer``: when set (an on-disk state backend), the driver resumes the graph, the
  quality stages, the sources' positions and the sinks from the last good checkpoint, and
  commits whenever the checkpointer says one is due (after draining the writers);
- ``progress(rows)``: called after each batch;
- ``stop``: an event; when set, the batch in hand is finished, the sinks are closed cleanly and
  the run ends (Ctrl+C in a live job keeps what was written);
- ``final_is_end``: whether the last checkpoint marks the end of the input (finite sources) or
  a point the next run goes on from (streams).

Finite sources are read ahead on threads and merged by time at batch granularity (the next
batch comes from the source whose waiting batch starts earliest). Each sink of a stream gets
its own writer thread, opened on the stream's first batch; a stream with no rows still leaves
well-formed (empty) outputs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from tickflow.engine.columns import empty_batch
from tickflow.engine.contract import AbortableSink, DictionaryKeySource, StreamingSource
from tickflow.engine.runtime.graph import StreamGraph, merged
from tickflow.engine.runtime.morsels import joined, morsel_target, row_bytes
from tickflow.engine.runtime.pipeline import RunSummary, Writer, prefetch
from tickflow.engine.runtime.quality import QualitySpec, QualityStage


class StreamOutput:
    """A stream's sinks, each behind its own writer thread, opened with the first batch's schema.

    One thread per sink, not one for all: a research run's Parquet file (whose encoding and
    write release the GIL) and its report (numpy statistics) then run beside each other and
    beside the kernels, instead of one after the other on a single writer thread that the
    kernels wait for. ``inline`` sinks are written by the loop itself, before the others are
    handed to their writers (sinks whose write only enqueues, such as Kafka's producer: a
    thread hand-off would cost more than it saves on the tick-to-signal path).
    """

    def __init__(self, sinks: list[Any], schema: pa.Schema,
                 inline: Callable[[Any], bool] | None = None):
        self.sinks = sinks
        self.schema = schema
        self.direct = [s for s in sinks if inline is not None and inline(s)]
        self.threaded = [s for s in sinks if s not in self.direct]
        self.writers: list[Writer] = []
        self.opened = False

    def open(self, schema: pa.Schema | None = None) -> None:
        """Open the sinks and the writers (done by the first batch unless called before)."""
        if not self.opened:
            for s in self.sinks:
                s.open(schema or self.schema)
            self.opened = True
            self.writers = [Writer([s], name=f"tickflow-write-{type(s).__name__}")
                            for s in self.threaded]

    def put(self, batch: pa.RecordBatch) -> None:
        if not self.opened:
            self.open(batch.schema)
        for s in self.direct:
            s.write(batch)
        for writer in self.writers:
            writer.put(batch)

    def drain(self) -> None:
        for writer in self.writers:
            writer.drain()

    def finish(self) -> None:
        """Flush the writers; a stream that never had a row writes one empty batch."""
        if not self.opened:
            self.put(empty_batch(self.schema))
        errors = self._finish_writers(prepare=True)
        if errors:
            raise errors[0]

    def stop(self) -> None:
        self._finish_writers()  # the run is failing already: the first error is the one raised

    def _finish_writers(self, prepare: bool = False) -> list[BaseException]:
        """End every writer thread (one failing does not leave the others running). All are
        told first, then waited for: a writer done with its batches (the report's) prepares
        its sink's close (``Writer.end``) while another (the Parquet file's) still writes."""
        writers, self.writers = self.writers, []
        for writer in writers:
            writer.end(prepare)
        errors: list[BaseException] = []
        for writer in writers:
            try:
                writer.finish()
            except BaseException as exc:
                errors.append(exc)
        return errors


class GraphState:
    """The graph plus the quality stages: what a checkpoint stores and a resume restores."""

    def __init__(self, graph: StreamGraph, stages: dict[str, QualityStage]):
        self.graph = graph
        self.stages = stages
        # a stage that runs ahead of the loop: its state after the last batch the graph took
        self.marks: dict[str, Any] = {}

    def gather(self, extra: dict[str, Any] | None = None) -> tuple[Any, bytes | None]:
        quality = {name: st.snapshot(self.marks.get(name)) for name, st in self.stages.items()}
        return self.graph.gather({**(extra or {}), "quality": quality})

    def scatter(self, snapshot: Any, blob: bytes | None) -> dict[str, Any]:
        extra = self.graph.scatter(snapshot, blob)
        for name, state in extra.get("quality", {}).items():
            if name in self.stages:
                self.stages[name].restore(state)
        return extra


class Driver:
    """Runs one compiled job's graph over its sources to the end (or until ``stop``).

    Args:
        job: the compiled job (its ``streams`` plan).
        workers: kernel worker threads per pipeline.
        morsel_rows: rows per source batch.
        sources: stream name -> opened Source; the job's sources when None.
        sinks: ``(sink, stream)`` pairs; the job's sinks when None.
        progress, checkpointer, stop, final_is_end: the hooks (module docstring).
        dead_letters: where rows the quality stage drops go (a ``DeadLetters``), or None.
        columns: source name -> the columns to read (all when absent).
        feed: where batches come from instead of reading the sources to their end: an
            iterable of ``(source, (batch, position) | None)`` in arrival order (the live
            placement's pollers).
        on_durable: called once the output is durable (after each checkpoint, and after the
            sinks closed): the live placement commits its consumer offsets there.
        checkpoint_token, on_checkpointed: when given, a checkpoint due while running is
            deferred (``Checkpointer.begin``): its state is taken at once and written, on a
            thread of its own, once its acknowledged sinks (Kafka) have acknowledged its
            outputs, checked between batches (``settle_checkpoints``), so the loop waits for
            neither the broker nor the disk there;
            ``on_checkpointed`` then gets what ``checkpoint_token()`` gave when it began.
        inline: which sinks the loop writes itself instead of their writer threads (live: the
            sinks whose write only enqueues, and the latency observer after them).
        threads: False runs everything on the calling thread (no read-ahead, no writer): a Dask
            task has one core, where those threads would only contend for it and the GIL.
    """

    def __init__(self, job: Any, *, workers: int = 1, morsel_rows: int = 65_536,
                 sources: dict[str, Any] | None = None,
                 sinks: list[tuple[Any, str]] | None = None,
                 progress: Callable[[int], None] | None = None, checkpointer: Any = None,
                 stop: threading.Event | None = None, final_is_end: bool = True,
                 dead_letters: Any = None, columns: dict[str, list[str]] | None = None,
                 feed: Any = None, on_durable: Callable[[], None] | None = None,
                 inline: Callable[[Any], bool] | None = None, threads: bool = True,
                 checkpoint_token: Callable[[], Any] | None = None,
                 on_checkpointed: Callable[[Any], None] | None = None):
        self.job = job
        self.workers = max(1, workers)
        self.threads = threads
        self.morsel_rows = morsel_rows
        self.sources = sources if sources is not None else {
            u.label: u.definition.cls(u.config, job.context) for u in job.sources}
        self.sinks = sinks if sinks is not None else [
            (u.definition.cls(u.config, job.context), stream)
            for u, stream in zip(job.sinks, job.sink_streams, strict=True)]
        self.progress = progress
        self.checkpointer = checkpointer
        self.stop = stop
        self.final_is_end = final_is_end
        self.columns = columns or {}
        self.feed = feed
        self.on_durable = on_durable
        self.checkpoint_token = checkpoint_token
        self.on_checkpointed = on_checkpointed
        self.inline = inline if threads else (lambda sink: True)
        self.dead_letters = dead_letters
        if dead_letters is None and job.spec.quality.dead_letter_path:
            from tickflow.connectors.dead_letter import DeadLetters

            self.dead_letters = DeadLetters(job.spec.quality.dead_letter_path,
                                            source=job.spec.name)
        self.graph = StreamGraph(job, self.workers)
        spec: QualitySpec = job.spec.quality
        self.stages = {name: QualityStage(spec, name, job.key, self.dead_letters,
                                          streaming=isinstance(src, StreamingSource))
                       for name, src in self.sources.items()}
        self.state = GraphState(self.graph, self.stages)
        self.outputs: dict[str, StreamOutput] = {}

    def open_outputs(self) -> None:
        """Open every stream's sinks now (a live run checkpoints its empty state first)."""
        for out in self.outputs.values():
            out.open()

    def _defers(self, cp: Any) -> bool:
        return self.checkpoint_token is not None and cp.can_defer()

    def _settle_outputs(self) -> None:
        """Before a checkpoint: every batch it covers is in the sinks, and every row the
        quality stages dropped from those batches is in the dead-letter file (flushed to the
        OS: a resume re-reads only what comes after the checkpoint, so a dead letter still in
        this process's buffer would be lost with it)."""
        for out in self.outputs.values():
            out.drain()
        if self.dead_letters is not None:
            self.dead_letters.flush()

    def settle_checkpoints(self) -> None:
        """Deferred checkpoints, between batches and when idle (never waits): begin one that
        is due (also one that came due while the one before was pending), then write the
        pending one once its outputs are acknowledged."""
        cp = self.checkpointer
        if cp is None or not self._defers(cp):
            return
        sinks = [s for s, _ in self.sinks]
        if cp.overdue():
            self._settle_outputs()
            cp.begin(self.state, sinks, self.checkpoint_token())
        for token in cp.settle(sinks):
            if self.on_checkpointed is not None:
                self.on_checkpointed(token)

    def warm(self) -> None:
        """Load what the first batch would before it comes (a live run calls it before
        reading): numba's machine code of every kernel (``StreamGraph.warm``), and pandas,
        which pyarrow imports the first time it converts numpy data (``pa.array``,
        ``to_numpy`` with a copy; a Kafka sink's first batch took 0.28 s for it); and the state's
        per-row buffers at their full windows (``Pipeline.widen_windows``)."""
        self.graph.warm()
        pa.array(np.zeros(1, dtype=np.int8))
        if getattr(self.checkpointer, "page_keys", None):
            return  # paged state lives in the backend, page by page, at the widths it has
        for pipeline in self.graph.pipelines.values():
            pipeline.widen_windows()  # the first batches would each widen them in turn

    def _dictionary_keys(self) -> None:
        """Sources that can read the key column dictionary-encoded do so when one pipeline
        reads them and decodes it on output (a one-stream job whose state is not paged)."""
        main = self.graph.main_pipeline
        paged = getattr(self.checkpointer, "page_keys", None)
        if main is None or not self.graph.is_single or paged or self.feed is not None:
            return
        for source in self.sources.values():
            if isinstance(source, DictionaryKeySource):
                source.read_as_dictionary([main.job.key])
                main.decode.add(main.job.key)

    def _inputs(self) -> dict[str, Iterator[Any]]:
        """Each source's batches through its quality stage, on the read-ahead thread. With
        checkpoints, each batch comes with the source's position and the stage's state after
        it (``QualityStage.marked``), which a checkpoint records together."""
        cp = self.checkpointer
        inputs: dict[str, Iterator[Any]] = {}
        for name, source in self.sources.items():
            batches = source.batches(self.columns.get(name), self.morsel_rows)
            stage = self.stages[name]
            if cp is None:
                wrapped = self._joined(stage.wrap(batches), lambda b: (b, ()), lambda b, r: b)
                inputs[name] = prefetch(wrapped) if self.threads else wrapped
            else:
                from tickflow.engine.state.recovery import with_positions

                self.state.marks[name] = stage.mark()  # as resumed, before any batch
                wrapped = self._joined(stage.marked(with_positions(source, batches)),
                                       lambda item: (item[0], item[1:]),
                                       lambda b, rest: (b, *rest))
                inputs[name] = prefetch(wrapped)
        return inputs

    def _joined(self, items: Iterator[Any], split: Callable[[Any], tuple],
                pack: Callable[..., Any]) -> Iterator[Any]:
        """A one-pipeline job's batches joined into bigger morsels once it has seen many keys
        (``engine/runtime/morsels.py``); other graphs take the source's batches as they are."""
        main = self.graph.main_pipeline
        if main is None or not self.graph.is_single:
            return items
        schema = self.graph.schemas.get(self.job.main_stream)
        width = row_bytes(schema) if schema is not None else 0
        budget = self.job.spec.executor.morsel_mb

        def target() -> int:  # (keys read on the read-ahead thread)
            return morsel_target(self.morsel_rows, len(main.keys), width, budget)

        return joined(items, target, split, pack)

    def run(self) -> RunSummary:
        job, graph, cp = self.job, self.graph, self.checkpointer
        summary = RunSummary()
        start = time.perf_counter()
        outputs = self.outputs
        sinks = [s for s, _ in self.sinks]
        index = {name: i for i, name in enumerate(self.sources)}
        finished = stopped = False
        try:
            schemas = graph.bind({n: s.schema() for n, s in self.sources.items()})
            if cp is not None:
                main = graph.main_pipeline
                if graph.is_single and main is not None:  # state.page_keys pages it
                    graph.processors[job.main_stream] = cp.processor(main)
                cp.resume(self.state, list(self.sources.values()), sinks)
            groups: dict[str, list[Any]] = {}
            for sink, stream in self.sinks:
                groups.setdefault(stream, []).append(sink)
            for stream, group in groups.items():
                outputs[stream] = StreamOutput(group, schemas[stream], self.inline)
                graph.attach(stream, outputs[stream])
            self._dictionary_keys()
            positions = list(cp.positions) if cp is not None else [None] * len(index)
            inline = self.feed is not None  # quality checked in this loop
            items = self.feed if inline else merged(self._inputs(), paired=cp is not None)
            marks = self.state.marks
            for name, item in items:
                if item is None:
                    tail = self.stages[name].flush() if inline else None
                    if tail is not None:
                        graph.emit(name, tail)
                    graph.end(name)
                    continue
                if inline:
                    batch, position = item
                    batch = self.stages[name].check(batch)
                elif cp is not None:
                    batch, position, marks[name] = item
                else:
                    batch, position = item, None
                graph.emit(name, batch)
                graph.advance()
                summary.rows += batch.num_rows
                if self.progress is not None:
                    self.progress(batch.num_rows)
                if cp is not None:
                    if position is not None:
                        positions[index[name]] = position
                    due = cp.advance_all(batch.num_rows, positions)
                    if self._defers(cp):
                        self.settle_checkpoints()  # begins the one due, writes an acked one
                    elif due:
                        self._settle_outputs()
                        cp.commit(self.state, sinks)
                        if self.on_durable is not None:
                            self.on_durable()
                if self.stop is not None and self.stop.is_set():
                    break
            stopped = self.stop is not None and self.stop.is_set()
            for out in outputs.values():
                out.finish()
            if cp is not None:
                self._settle_outputs()
                cp.commit(self.state, sinks, is_final=self.final_is_end and not stopped)
            summary.seconds = time.perf_counter() - start
            for sink in sinks:
                text = sink.close()
                if text:
                    summary.sink_summaries.append(text)
            finished = True
            if self.on_durable is not None:
                self.on_durable()
            if cp is not None and self.final_is_end and not stopped:
                cp.release(sinks)
        finally:
            if not finished:
                for out in outputs.values():
                    out.stop()
                for sink in sinks:
                    if isinstance(sink, AbortableSink):
                        sink.abort()
            graph.close()
            for s in self.sources.values():
                s.close()
            if self.dead_letters is not None:
                self.dead_letters.close()
        summary.signal_counts = graph.signal_counts
        summary.quality_counts = self.quality_counts()
        return summary

    def quality_counts(self) -> dict[str, int]:
        """Every source's quality counts added up, by reason (of the batches the graph took:
        a stopped run's read-ahead checked a few more)."""
        total: dict[str, int] = {}
        for name, stage in self.stages.items():
            for reason, n in stage.summary(self.state.marks.get(name)).items():
                total[reason] = total.get(reason, 0) + n
        return total
