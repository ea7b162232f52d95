"""``kind: simulator``: synthetic multi-symbol L1 ticks in the canonical schema.

The ticks come from a small market model (:mod:`tickflow.connectors.market_model`: Poisson
arrivals, a common factor and each symbol's own noise, calm and stressed regimes, quotes on a
tick grid and trades at the touch). Output is deterministic for a seed and independent of the
batch size asked for: rows are made in fixed chunks of :data:`CHUNK_ROWS`, chunk ``k`` drawn
from a generator seeded with ``(seed, k)`` with the per-symbol state carried from chunk to
chunk, then re-sliced to ``batch_rows``; the first ``n`` rows of a longer run equal a run of
``n`` rows.
"""


from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Source,
    source,
)
from tickflow.connectors.market_model import (  # noqa: F401  (re-exported)
    _EPOCH,
    CHUNK_ROWS,
    DEFAULT_SYMBOLS,
    _Generator,
    _initial_state,
    _make_params,
    symbol_names,
)
from tickflow.engine.errors import SourceError


class SimulatorConfig(ConnectorConfig):
    """Synthetic multi-symbol L1 ticks (Coinbase-like) for tests, demos and benchmarks."""

    kind: Literal["simulator"] = "simulator"
    symbols: Annotated[int, Field(ge=1, le=100_000)] | list[str] = Field(
        14, description="number of symbols (the 14 Coinbase products BTC-USD ... ATOM-USD first, "
                        "then SYM00015-USD, ...) or an explicit list of symbol names")
    rows: int = Field(1_000_000, ge=0, description="total number of ticks to generate")
    seed: int = Field(7, ge=0, description="random seed; the same seed gives the same ticks")
    start: datetime = Field(datetime(2026, 1, 1, tzinfo=UTC),
                            description="timestamp of the start of the simulation (ISO 8601; "
                                        "UTC if no offset is given)")
    ticks_per_second: float = Field(200.0, gt=0, le=1e7,
                                    description="mean arrival rate of ticks, all symbols together")
    exchange: str = Field("sim", min_length=1, description="value of the `exchange` column")

    def expected_keys(self) -> int | None:
        return self.symbols if isinstance(self.symbols, int) else len(self.symbols)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one symbol")
            if any(not s or not s.strip() for s in value):
                raise ValueError("symbol names must not be empty")
            dupes = sorted({s for s in value if value.count(s) > 1})
            if dupes:
                raise ValueError(f"duplicate symbols: {', '.join(dupes)}")
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _to_batch(cols: dict[str, np.ndarray], names: pa.Array, exchange: str,
              fields: list[pa.Field]) -> pa.RecordBatch:
    n = len(cols["timestamp"])
    arrays = []
    for f in fields:
        if f.name == "timestamp":
            arrays.append(pa.array(cols["timestamp"], type=f.type))
        elif f.name == "symbol":
            arrays.append(names.take(pa.array(cols["code"])))
        elif f.name == "exchange":
            arrays.append(pa.repeat(pa.scalar(exchange, pa.string()), n))
        elif f.name == "last_size":
            arrays.append(pa.array(cols["last_size"], type=f.type, mask=~cols["is_trade"]))
        else:
            arrays.append(pa.array(cols[f.name], type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _rebatch(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-slice a stream of batches into batches of exactly ``batch_rows`` (the last shorter)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in batches:
        pending.append(b)
        have += b.num_rows
        while have >= batch_rows:
            take, pieces = batch_rows, []
            while take:
                head = pending[0]
                if head.num_rows <= take:
                    pieces.append(head)
                    pending.pop(0)
                    take -= head.num_rows
                else:
                    pieces.append(head.slice(0, take))
                    pending[0] = head.slice(take)
                    take = 0
            have -= batch_rows
            yield pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
    if have:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


@source("simulator", config=SimulatorConfig,
        summary="synthetic multi-symbol L1 ticks: correlated prices, regimes, trades and quotes")
class SimulatorSource(Source):
    """Deterministic synthetic tick stream in the canonical schema."""

    config: SimulatorConfig

    def __init__(self, config: SimulatorConfig, context: RunContext):
        super().__init__(config, context)
        self._start = 0  # the row seek() asked for
        self._emitted = 0  # rows yielded so far, counting the skipped ones

    def schema(self) -> pa.Schema:
        return CANONICAL_TICK_SCHEMA

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, found {batch_rows}")
        fields = _project(columns)
        return self._counted(_rebatch(self._chunks(fields), batch_rows))

    def position(self) -> dict[str, int]:
        """Rows yielded so far (resumable: the stream is deterministic for a seed)."""
        return {"rows": self._emitted}

    def seek(self, position: dict[str, int] | None) -> None:
        """Start at row ``position["rows"]``: earlier rows are regenerated and dropped."""
        self._start = int(position["rows"]) if position else 0

    def _counted(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        skip = self._emitted = self._start
        for batch in batches:
            if skip:
                cut = min(skip, batch.num_rows)
                batch, skip = batch.slice(cut), skip - cut
                if not batch.num_rows:
                    continue
            self._emitted += batch.num_rows
            yield batch

    def _chunks(self, fields: list[pa.Field]) -> Iterator[pa.RecordBatch]:
        cfg = self.config
        gen = _Generator(cfg)
        names = pa.array(gen.names, pa.string())
        remaining = cfg.rows
        k = 0
        while remaining > 0:
            n_out = min(CHUNK_ROWS, remaining)
            yield _to_batch(gen.chunk(k, n_out), names, cfg.exchange, fields)
            remaining -= n_out
            k += 1


def _project(columns: list[str] | None) -> list[pa.Field]:
    if columns is None:
        return list(CANONICAL_TICK_SCHEMA)
    unknown = [c for c in columns if c not in CANONICAL_TICK_SCHEMA.names]
    if unknown:
        raise SourceError(f"the simulator has no column(s) {', '.join(map(repr, unknown))} "
                          f"(its columns: {', '.join(CANONICAL_TICK_SCHEMA.names)})")
    return [CANONICAL_TICK_SCHEMA.field(c) for c in columns]


def write_simulated_parquet(path: str | Path, rows: int = 1_000_000,
                            symbols: int | list[str] = 14, seed: int = 7, *,
                            start: datetime | str | None = None,
                            ticks_per_second: float = 200.0, exchange: str = "sim",
                            compression: str = "lz4", row_group_rows: int = 262_144,
                            batch_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Write simulated ticks to one Parquet file (atomically: temp file, then rename).

    Returns ``{"path", "rows", "symbols"}``. The file's key-value metadata records the simulator
    settings under ``tickflow.simulator``.
    """
    import json

    from tickflow.connectors.parquet import AtomicParquetWriter
    from tickflow.engine import __version__

    settings: dict[str, Any] = {"kind": "simulator", "rows": rows, "symbols": symbols,
                                "seed": seed, "ticks_per_second": ticks_per_second,
                                "exchange": exchange}
    if start is not None:
        settings["start"] = start
    cfg = SimulatorConfig(**settings)
    src = SimulatorSource(cfg, RunContext(job_name="simulate"))
    meta = {"tickflow.simulator": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
            "tickflow.version": __version__}
    writer = AtomicParquetWriter(path, src.schema(), compression=compression,
                                 row_group_rows=row_group_rows, metadata=meta)
    try:
        for batch in src.batches(None, batch_rows):
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"path": str(writer.path), "rows": writer.rows, "symbols": symbol_names(cfg.symbols)}
