"""The job file's shape, as frozen pydantic models (``extra="forbid"``).

Sources and sinks keep their connector-specific keys here and are validated by their
connector's own config model at compile time, so that a new connector needs no edit here.
``run-job docs`` renders docs/job-reference.md from these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tickflow.engine.backtest.spec import StrategySpec, SweepSpec
from tickflow.engine.durations import Duration, parse_duration_us
from tickflow.engine.runtime.quality import QualitySpec

Mode = Literal["live", "research", "backtest", "arbitrage", "export"]

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConnectorBlock(BaseModel):
    """A source or sink: ``kind`` names a registered connector; its other keys are that
    connector's settings (see the connector reference)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(description="registered connector name, e.g. parquet, simulator")
    id: str | None = Field(None, pattern=_ID_PATTERN,
                           description="name other steps use in `from:`")
    from_: str | None = Field(None, alias="from",
                              description="sinks only: the stream written (a source id or an "
                                          "operator step id; default: the main stream)")


class StepSpec(Strict):
    """One step: a kernel (same rows, new columns) or an operator (a new stream of rows).

    Its params, and optional column remapping; engine/streams.py says which stream it reads.
    """

    id: str | None = Field(None, pattern=_ID_PATTERN,
                           description="unique step name (default: the kernel or operator "
                                       "name); an operator's output stream has this name")
    kernel: str | None = Field(None, description="registered kernel name (`run-job kernels` "
                                                 "lists them)")
    operator: str | None = Field(None, description="registered operator name: resample_ohlc, "
                                                   "asof_join, filter, ... (changes the rows)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="the kernel's parameters")
    input: str | None = Field(None, description="column for the kernel's first input")
    inputs: dict[str, str] | list[str] | None = Field(
        None, description="columns for the kernel's inputs, by input name or in order")
    output: str | None = Field(None, description="new name for the kernel's first output")
    outputs: dict[str, str] | list[str] | None = Field(
        None, description="new names for the outputs, by default name or in order")
    from_: str | None = Field(None, alias="from",
                              description="the stream this step reads: a source id or an "
                                          "operator step id (default: the stream of the "
                                          "nearest operator step above, else the first source)")
    description: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StepSpec:
        if (self.kernel is None) == (self.operator is None):
            raise ValueError("give exactly one of kernel or operator")
        if self.input is not None and self.inputs is not None:
            raise ValueError("give either input or inputs, not both")
        if self.output is not None and self.outputs is not None:
            raise ValueError("give either output or outputs, not both")
        return self


class CheckpointSpec(Strict):
    """When state is checkpointed (state backends other than memory)."""

    every: str | int | None = Field(
        None, description="a duration (10s) or a number of batches between checkpoints "
                          "(default 10s); a duration counts from the end of the last "
                          "checkpoint's write")
    keep: int = Field(3, ge=1, description="newest checkpoints kept (older ones are deleted; "
                                           "a damaged newest one falls back to the one before)")

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"expected a number of batches >= 1 or a duration like 10s, "
                             f"found {value!r}")
        if isinstance(value, str):
            parse_duration_us(value)
        return value


class StateSpec(Strict):
    """Where per-key kernel state lives between batches and restarts."""

    backend: str = Field("memory", description="registered state backend name")
    path: str | None = Field(None, description="directory for on-disk backends; checkpoints "
                                               "go to <path>/<job name>/checkpoints "
                                               "(default .tickflow/state)")
    page_keys: int | None = Field(
        None, ge=1, description="hold at most this many keys' state in RAM: state is paged "
                                "in and out per shard of key ids (rocksdb, tiledb)")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)


class ExecutorSpec(Strict):
    """How the job runs: on this machine with threads, or on a Dask cluster."""

    kind: Literal["local", "dask"] = Field("local", description="local | dask")
    workers: int = Field(0, ge=0, description="kernel worker threads; 0 = one per CPU core but "
                                              "one (left to reading and writing)")
    morsel_rows: int = Field(65_536, ge=1, description="rows per morsel (unit of work)")
    morsel_mb: int = Field(32, ge=1, le=4096, description=(
        "once a job has seen >= 4,096 keys, consecutive batches are joined into morsels of "
        "about 4 rows a key, up to 4x morsel_rows and this many MB of output rows: more is "
        "faster at many keys (a key's state is reused while in cache) and costs about three "
        "times as much in peak memory"))
    address: str | None = Field(None, description="Dask scheduler address (kind: dask)")
    partitions: int = Field(0, ge=0, description="key partitions on Dask, one task and one "
                                                 "output part each; 0 = one per worker thread")
    progress: bool = Field(True, description="show a progress bar on a terminal")


class ReportSpec(Strict):
    """The research summary: per-symbol statistics and cross-symbol correlations."""

    path: str | None = Field(None, description="report file: .html (interactive) or .md "
                                                 "(with a PNG heatmap beside)")
    grid: str = Field("1s", description="time grid on which returns are aligned for correlations")
    returns: str = Field("log_return", description="column of per-tick returns")
    rsi: str = Field("rsi", description="RSI column")
    imbalance: str = Field("l1_imbalance", description="L1 imbalance column")
    alarm: str = Field("cusum_alarm", description="regime-change alarm column")


class LiveReportSpec(Strict):
    """The live summary page, written when a live or export run ends."""

    path: str = Field(description="HTML file: per-symbol ticks and signals, signals over time, "
                                  "latency, consumer lag, dead letters, tick-quality counts")
    bucket: Duration = Field("1m", description="time bucket of the signals-over-time plot")

    @field_validator("path")
    @classmethod
    def _html(cls, value: str) -> str:
        if not value.lower().endswith((".html", ".htm")):
            raise ValueError(f"the live report path must end in .html, found {value!r}")
        return value


class JobSpec(Strict):
    """A whole job: where data comes from, what is computed and decided, where it goes."""

    name: str = Field(description="job name; names outputs, state and logs")
    mode: Mode = Field(description="live | research | backtest | arbitrage | export")
    description: str | None = None
    key: str = Field("symbol", description="column that keys every kernel's state")
    include: list[str] = Field(default_factory=list,
                               description="YAML files whose steps come before this file's")
    sources: list[ConnectorBlock] = Field(min_length=1, description="where ticks come from")
    steps: list[StepSpec] = Field(default_factory=list, description="kernel steps")
    signals: dict[str, str] = Field(
        default_factory=dict,
        description="name: rule expression; adds an int8 column per signal (1 when it holds)")
    state: StateSpec = Field(default_factory=StateSpec)
    quality: QualitySpec = Field(
        default_factory=QualitySpec,
        description="broken ticks (bad prices, crossed quotes, time going backwards within a "
                    "key): what the driver does with them, in every mode")
    sinks: list[ConnectorBlock] = Field(default_factory=list, description="where results go")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    report: ReportSpec | None = Field(None, description="research summary (research mode)")
    live_report: LiveReportSpec | None = Field(
        None, description="live summary page (live and export modes), written at the run's end")
    strategy: StrategySpec | None = Field(
        None, description="backtest strategy: entry/exit rules, sizing, execution, outputs "
                          "(mode: backtest; see engine/backtest/spec.py)")
    sweep: SweepSpec | None = Field(
        None, description="parameter sweep of the strategy, run by `run-job JOB --sweep`")
    plugins: list[str] = Field(
        default_factory=list,
        description="Python modules to import first; they register the user's own kernels, "
                    "connectors or state backends (their code runs: trust them like a package)")
    plugin_paths: list[str] = Field(
        default_factory=list,
        description="directories added to the import path for `plugins`, relative to the job "
                    "file")
    model_paths: list[str] = Field(
        default_factory=list,
        description="directories `model_score` may load model files from (relative to the "
                    "working directory); any other model file is refused, because loading a "
                    "pickled model runs code")

    @field_validator("signals")
    @classmethod
    def _signal_names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"a signal name must be an identifier, found {name!r}")
        return value
