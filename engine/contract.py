"""The engine's I/O contract: what every source and sink provides, and what they may declare.

Connectors implement :class:`Source` and :class:`Sink` and move Arrow record batches in the
canonical tick schema. Optional abilities are *declared* by implementing the methods of a
capability protocol below; the driver and the executors check ``isinstance(obj, Protocol)``
(runtime-checkable ``typing.Protocol``s), never a connector's kind name, so a third-party
connector gets checkpoints, live commits or Dask partitioning by implementing the methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

CANONICAL_TICK_SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("symbol", pa.string()),
    ("exchange", pa.string()),
    ("price", pa.float64()),
    ("best_bid", pa.float64()),
    ("best_ask", pa.float64()),
    ("best_bid_size", pa.float64()),
    ("best_ask_size", pa.float64()),
    ("last_size", pa.float64()),
    ("volume_24h", pa.float64()),
    ("sequence", pa.int64()),
])


class ConnectorConfig(BaseModel):
    """Base of every connector's YAML block: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    id: str | None = None

    def expected_keys(self) -> int | None:
        """How many keys (symbols) a source will produce, when its config says so.

        The compiler sizes its state-memory estimate with it; None when the config cannot tell
        (a file or a topic: the data decides).
        """
        return None


@dataclass
class RunContext:
    """What a connector may know about the run: the job's identity and provenance."""

    job_name: str
    job_path: str = ""
    job_yaml: str = ""
    job_sha256: str = ""
    tickflow_version: str = ""
    git_commit: str | None = None
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, str]:
        """Key/value metadata that outputs carry so a file says which job made it."""
        meta = {"tickflow.job_name": self.job_name, "tickflow.job_path": self.job_path,
                "tickflow.job_yaml": self.job_yaml, "tickflow.job_sha256": self.job_sha256,
                "tickflow.version": self.tickflow_version}
        if self.git_commit:
            meta["tickflow.git_commit"] = self.git_commit
        return meta


class Source:
    """A stream of record batches. ``schema`` must be known before the first batch (compile).

    Resumable sources (checkpointed jobs) also provide two methods:

    - ``position() -> dict``: called right after ``batches()`` yielded a batch, it names the
      point just after that batch as a JSON-able dict that only the source interprets (Parquet:
      ``{"file", "path", "row"}``; Kafka: offsets per partition). It is recorded in the
      checkpoint together with the state that covers every row before it.
    - ``seek(position: dict) -> None``: called before ``batches()`` on a restart, with a value
      ``position()`` returned; the next batch starts exactly there. A source that can no longer
      find the position (files changed, offsets expired) raises ``SourceError``.

    A source without them cannot resume: a restart then needs ``--reset-state``.
    """

    def __init__(self, config: ConnectorConfig, context: RunContext):
        self.config = config
        self.context = context

    def schema(self) -> pa.Schema:
        raise NotImplementedError

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def close(self) -> None:
        return None


class Sink:
    """Receives the job's output batches in input order; ``close`` returns a short summary.

    Sinks of checkpointed jobs may provide ``seek(position | None)`` (before ``open``: drop
    output past a checkpoint's position, or all of it when None), ``checkpoint() -> dict``
    (make everything written so far durable and return its position) and ``release()`` (after
    the final checkpoint: remove recovery leftovers). With them a resumed run writes each row
    exactly once; a sink without them sees only the rows after a resume. Any sink may provide
    ``prepare_close()``: what its ``close`` computes without writing, run on its writer thread
    after the last batch while other writers finish (the research report's page).
    """

    def __init__(self, config: ConnectorConfig, context: RunContext):
        self.config = config
        self.context = context

    def open(self, schema: pa.Schema) -> None:
        return None

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> str | None:
        return None

    def required_columns(self) -> list[str]:
        """Columns this sink reads; the compiler checks that they exist."""
        return []


# ------------------------------------------------------------------ declared capabilities


@runtime_checkable
class ResumableSource(Protocol):
    """A source that can name the point after its last batch and restart there.

    ``position()`` is called right after ``batches()`` yielded a batch (a JSON-able dict only
    the source interprets); ``seek(position)`` before ``batches()`` on a restart. A source that
    can no longer find the position raises ``SourceError``.
    """

    def position(self) -> dict[str, Any]: ...

    def seek(self, position: dict[str, Any] | None) -> None: ...


@runtime_checkable
class SchemaWithoutData(Protocol):
    """A source whose data may not exist yet (a file made later) but whose schema is declared.

    ``declared_schema()`` returns None when the data is there (its real schema then counts), and
    otherwise the declared schema with a short reason, so ``run-job validate`` needs no data.
    """

    def declared_schema(self) -> tuple[pa.Schema, str] | None: ...


@runtime_checkable
class FileSource(Protocol):
    """A source backed by files another process can read (Dask tasks read their keys' rows
    from them themselves)."""

    def files(self) -> list[str]: ...


@runtime_checkable
class StreamingSource(Protocol):
    """An endless source (Kafka): polled batch by batch, offsets committed after the sinks."""

    def open(self) -> Any: ...

    def poll(self, timeout_s: float | None = None) -> Any: ...

    def commit(self, offsets: dict[int, int]) -> bool: ...

    def lag(self) -> int: ...

    def is_idle_end(self) -> bool: ...

    def mark_active(self) -> None: ...


@runtime_checkable
class DictionaryKeySource(Protocol):
    """A source that can hand string key columns over dictionary-encoded, as it stores them, so
    the key index maps each dictionary once instead of hashing every row."""

    def read_as_dictionary(self, columns: list[str]) -> None: ...


@runtime_checkable
class StatusReporter(Protocol):
    """A source that reports its own conditions (waiting for a broker, an outage, a broker
    back) as lines; an executor with a view points ``status`` at it."""

    status: Callable[[str], None]


@runtime_checkable
class GroupMemberSource(Protocol):
    """A streaming source whose live job may run as N member processes sharing its partitions.

    ``group_member(on_assign, on_revoke)`` returns the not yet joined membership (``join()``,
    ``poll()``, ``leave()``, ``owned``, ``rebalanced_at``), or None when the job runs as one
    process; ``partition_source_data(data, partition)`` narrows the source's YAML to one partition.
    """

    def group_member(self, on_assign: Any, on_revoke: Any) -> Any: ...

    def partition_source_data(self, data: dict[str, Any], partition: int) -> dict[str, Any]: ...


@runtime_checkable
class CheckpointedSink(Protocol):
    """A sink that writes each row exactly once across a resume.

    ``seek(position | None)`` before ``open`` drops output past a checkpoint (all of it for
    None); ``checkpoint()`` makes what was written durable and returns its position.
    """

    def seek(self, position: dict[str, Any] | None) -> None: ...

    def checkpoint(self) -> dict[str, Any]: ...


@runtime_checkable
class DeferredCheckpointSink(Protocol):
    """A checkpointed sink whose writes become durable on their own, once a broker has
    acknowledged them (Kafka), so a checkpoint need not wait for them on the driver's thread.

    ``checkpoint_mark()`` names everything written so far, without waiting;
    ``checkpoint_at(mark)`` is the position after exactly those writes once they (and every
    earlier one) are acknowledged, None until then (never blocks); ``flush()`` waits.
    """

    def checkpoint_mark(self) -> int: ...

    def checkpoint_at(self, mark: int) -> dict[str, Any] | None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


@runtime_checkable
class ReleasableSink(Protocol):
    """A checkpointed sink with recovery files to remove after the final checkpoint."""

    def release(self) -> None: ...


@runtime_checkable
class AbortableSink(Protocol):
    """A sink that can drop its unfinished output (temporary files) when a run fails."""

    def abort(self) -> None: ...


@runtime_checkable
class AcknowledgedSink(Protocol):
    """A sink whose writes are durable once acknowledged (Kafka): live commits per batch."""

    is_durable_on_flush: bool

    def in_flight(self) -> int: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


@runtime_checkable
class PartitionedSink(Protocol):
    """A sink whose output can be written as one part per key partition (Dask), then published.

    ``part(run_id, partition, metadata)`` returns the sink one task writes (on a worker; its
    part is staged beside the target, ``metadata`` added to the provenance); after every task
    finished, ``commit_parts(run_id, partitions, digests)`` checks that each partition's part
    is staged and unchanged since its task (``digests``: partition -> what the part's
    ``digest()`` returned, checked without reading the part again) and publishes them at
    once, returning the files; ``discard_parts(run_id)`` drops the staged parts of a failed
    run. The sink's paths must be absolute (the executor sees to it).
    """

    def part(self, run_id: str, partition: int, metadata: dict[str, str]) -> Any: ...

    def commit_parts(self, run_id: str, partitions: int,
                     digests: dict[int, list[Any]] | None = None) -> list[str]: ...

    def discard_parts(self, run_id: str) -> None: ...


@runtime_checkable
class MergeableSink(Protocol):
    """A sink that accumulates a result rather than rows (the research report).

    A partitioned run feeds one per key partition and merges them with ``merge(other)``, as if
    ``other``'s batches had been written after this one's; ``close`` then writes the result and
    ``results()`` returns it as plain data.
    """

    def merge(self, other: Any) -> None: ...

    def results(self) -> dict[str, Any]: ...
