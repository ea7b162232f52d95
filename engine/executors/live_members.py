"""A live job run as one of N member processes sharing the tick topic's partitions (``group:``).

Why one runner per owned partition: the topic is keyed by symbol, so every key's ticks, state
and outputs belong to one partition. Each partition this process owns runs as its own
single-partition checkpointed live job (``LiveRunner``): its own consumer, its keys' state and
checkpoints in ``<state>/<job>/partition-NNNNN/``, its own output part
(``<parquet path>/part-NNNNN.parquet``) and dead-letter file. The crash guarantees of a
checkpointed live job (outputs committed with the checkpoint, a resume recomputing exactly the
uncommitted tail, Kafka sinks skipping messages a killed run already wrote) then hold per
partition, and a partition can move between processes:

- assigned: its runner takes the partition's state folder (waiting for the previous owner to
  give it up) and resumes from its newest checkpoint;
- revoked (inside the rebalance, before the group hands it on): its runner finishes the batch
  in hand, checkpoints, closes its sinks and gives the folder up;
- a member killed outright leaves checkpoints; once the group notices (``session_timeout``)
  another member resumes them.

Which process owns what comes from Kafka's consumer group (``connectors/kafka_group.py``).
The state folder must be reachable by every member (one machine, or a shared volume).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from tickflow.engine.checkpoint import state_root
from tickflow.engine.compile import CompiledJob, compile_job
from tickflow.engine.contract import AcknowledgedSink, GroupMemberSource, PartitionedSink
from tickflow.engine.errors import StateError, TickflowError
from tickflow.engine.executors.live import LiveRunner, LiveSummary
from tickflow.engine.state.backend import get_backend
from tickflow.engine.state.lock import acquire_state_lock, release_state_lock


class MembersError(TickflowError):
    """The job cannot run as a group of member processes (the message says why)."""


def group_source(job: CompiledJob) -> Any:
    """The job's source when it runs as a group member (``group:`` set), else None."""
    for use in job.sources:
        source = use.definition.cls(use.config, job.context)
        if isinstance(source, GroupMemberSource) and \
                source.group_member(_ignore, _ignore) is not None:
            return source
    return None


def _ignore(partitions: list[int]) -> None:
    return None


def check_members(job: CompiledJob) -> Any:
    """The grouped source, once the job is known to run correctly split by partition."""
    from tickflow.engine.executors.dask import single_task_reason

    source = group_source(job)
    if source is None:
        raise MembersError("no source of this job has `group:`: it runs as one process")
    if len(job.sources) != 1:
        raise MembersError(f"a group of member processes shares one topic's partitions; this "
                           f"job has {len(job.sources)} sources")
    reason = single_task_reason(job)
    if reason is not None:
        raise MembersError(f"a multi-member live job splits the keys by partition, and {reason}"
                           f" (it needs every key in one process); run it without `group:`")
    if not get_backend(job.spec.state.backend).is_persistent:
        raise MembersError("a multi-member live job needs an on-disk state backend "
                           "(state.backend: rocksdb or tiledb, or --state-backend): a member "
                           "taking over a partition resumes it from its checkpoints")
    for use in job.sinks:
        sink = use.definition.cls(use.config, job.context)
        has_path = "path" in type(use.config).model_fields
        if has_path and not isinstance(sink, PartitionedSink | AcknowledgedSink):
            raise MembersError(f"sinks[{use.index}] (kind {use.definition.name!r}) writes one "
                               f"file; in a multi-member live job each partition writes its "
                               f"own part (parquet) or to a topic (kafka)")
    return source


def partition_job(job: CompiledJob, source: Any, partition: int) -> CompiledJob:
    """The job narrowed to one input partition: its source, state folder and output parts."""
    data = copy.deepcopy(job.loaded.data)
    data["sources"][0] = source.partition_source_data(data["sources"][0], partition)
    for use in job.sinks:
        sink = use.definition.cls(use.config, job.context)
        if isinstance(sink, PartitionedSink):
            data["sinks"][use.index]["path"] = f"{use.config.path}/part-{partition:05d}.parquet"
    state = data.setdefault("state", {}) or {}
    data["state"] = state
    state["path"] = str(partition_root(job) / f"partition-{partition:05d}")
    dead = job.spec.quality.dead_letter_path
    if dead:
        p = PurePath(dead)
        quality = data.setdefault("quality", {}) or {}
        data["quality"] = quality
        quality["dead_letter_path"] = str(p.with_name(f"{p.stem}.p{partition}{p.suffix}"))
    data.pop("live_report", None)  # one page per job, not per partition
    return compile_job(dataclasses.replace(job.loaded, data=data))


def partition_root(job: CompiledJob) -> Any:
    """The folder holding every partition's state folder."""
    return state_root(job.spec.name, job.spec.state.path)


class PartitionRun:
    """One owned partition, run on a thread until revoked, stopped or idle."""

    def __init__(self, job: CompiledJob, partition: int, workers: int,
                 takeover_timeout_s: float, log: Callable[[str], None]):
        self.job = job
        self.partition = partition
        self.workers = workers
        self.takeover_timeout_s = takeover_timeout_s
        self.log = log
        self.stop = threading.Event()
        self.summary: LiveSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"tickflow-partition-{partition}")

    def start(self) -> PartitionRun:
        self.thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def finish(self) -> None:
        """Finish the batch in hand, checkpoint, close the sinks, give the state folder up."""
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        folder = state_root(self.job.spec.name, self.job.spec.state.path)
        try:
            self._take(folder)
            try:
                runner = LiveRunner(self.job, workers=self.workers, stop=self.stop)
                runner.checkpoint_process = False  # (see LiveRunner.checkpoint_process)
                runner.checkpoint_log = lambda text: self.log(f"partition {self.partition}: "
                                                              f"{text}")
                self.summary = runner.run()
            finally:
                release_state_lock(folder)
        except BaseException as exc:
            self.error = exc

    def _take(self, folder: Any) -> None:
        """Lock the partition's state folder; a previous owner finishing its revoke, or one
        just killed, gives it up within the takeover timeout."""
        deadline = time.monotonic() + self.takeover_timeout_s
        said = False
        while True:
            try:
                acquire_state_lock(folder)
                return
            except StateError:
                if self.stop.is_set() or time.monotonic() > deadline:
                    raise
                if not said:
                    said = True
                    self.log(f"tickflow: partition {self.partition}: waiting for its previous "
                             f"owner to give up {folder}")
                time.sleep(0.1)


def run_members(job: CompiledJob, *, workers: int = 1, stop: threading.Event | None = None,
                max_seconds: float | None = None, reset_state: bool = False,
                log: Callable[[str], None] | None = None) -> LiveSummary:
    """Join the job's group and run every partition it assigns here until ``stop``,
    ``max_seconds``, or (``end_when_idle_s``) every owned partition has ended idle."""
    source = check_members(job)
    say = log or _stderr(job)
    stop = stop or threading.Event()
    if reset_state:
        _reset(job)
    group = source.config.group
    runs: dict[int, PartitionRun] = {}
    done: list[PartitionRun] = []
    parts: dict[int, CompiledJob] = {}

    def on_assign(partitions: list[int]) -> None:
        for p in partitions:
            if p not in runs:
                if p not in parts:
                    parts[p] = partition_job(job, source, p)
                    parts[p].context.quiet = job.context.quiet
                runs[p] = PartitionRun(parts[p], p, workers, group.takeover_timeout, say).start()
        say(f"tickflow: member of group {member.id}: partitions "
            f"{sorted(runs) or 'none'}")

    def on_revoke(partitions: list[int]) -> None:
        for p in partitions:
            run = runs.pop(p, None)
            if run is not None:
                run.finish()
                done.append(run)

    member = source.group_member(on_assign, on_revoke)
    start = time.monotonic()
    try:
        member.join()
        while not stop.is_set():
            member.poll(0.1)
            failed = [r for r in [*runs.values(), *done] if r.error is not None]
            if failed:
                raise failed[0].error  # type: ignore[misc]
            if max_seconds is not None and time.monotonic() - start >= max_seconds:
                break
            if runs and all(r.done for r in runs.values()) and \
                    time.monotonic() - member.rebalanced_at > 1.0:
                break  # every owned partition ended idle (a bounded run)
    finally:
        for p in list(runs):
            run = runs.pop(p)
            run.finish()
            done.append(run)
        member.leave()
    failed = [r for r in done if r.error is not None]
    if failed:
        raise failed[0].error  # type: ignore[misc]
    return _total([r.summary for r in done if r.summary is not None])


def _reset(job: CompiledJob) -> None:
    """``--reset-state``: every partition's checkpoints, refused while a member holds one."""
    import shutil

    root = partition_root(job)
    for folder in sorted(root.glob("partition-*")):
        inner = folder / job.spec.name
        acquire_state_lock(inner)  # StateError when another member runs it now
        try:
            shutil.rmtree(inner / "checkpoints", ignore_errors=True)
        finally:
            release_state_lock(inner)


def _total(summaries: list[LiveSummary]) -> LiveSummary:
    out = LiveSummary()
    for s in summaries:
        out.ticks += s.ticks
        out.messages += s.messages
        out.seconds = max(out.seconds, s.seconds)
        for target, part in ((out.signal_counts, s.signal_counts),
                             (out.dead_letters, s.dead_letters),
                             (out.quality_counts, s.quality_counts)):
            for k, v in part.items():
                target[k] = target.get(k, 0) + v
        out.sink_summaries.extend(s.sink_summaries)
        out.latency.merge(s.latency)
    return out


def _stderr(job: CompiledJob) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not job.context.quiet:
            print(text, file=sys.stderr, flush=True)

    return say


def run_members_from_cli(job: CompiledJob, args: Any, workers: int, console: Any) -> int:
    """``run-job`` for a job whose source has ``group:``: this process is one member."""
    from tickflow.engine.executors.live_hooks import stop_on_signals

    if getattr(args, "replay", None):
        raise MembersError("--replay feeds one process; replay into the topic first "
                           "(tickflow-collect or run-job without `group:`), then start the "
                           "members")
    stop = threading.Event()
    with stop_on_signals(stop):
        summary = run_members(job, workers=workers, stop=stop,
                              max_seconds=getattr(args, "max_seconds", None),
                              reset_state=bool(getattr(args, "reset_state", False)))
    if not getattr(args, "quiet", False):
        for line in summary.lines():
            console.print(line, markup=False)
    return 0
