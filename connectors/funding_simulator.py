"""``kind: funding_simulator``: spot and perpetual prices with the predicted funding rate.

Built on the tick simulator (``kind: simulator``): its mid price is the spot price. For each
symbol the perpetual trades at a premium that follows an Ornstein-Uhlenbeck process in time
(mean ``premium_bps``, stationary standard deviation ``premium_vol_bps``, half-life
``premium_half_life_s``), sampled exactly at the symbol's tick times, so the perp price is
``spot * (1 + premium)``. The funding rate published on each row is the usual perpetual-swap
formula, ``premium + clamp(interest_rate - premium, -0.05%, +0.05%)`` per funding interval,
computed from the current premium (what an exchange shows as the predicted rate between
funding times).

Output is deterministic for a seed and independent of the batch size asked for: the premium's
noise for the simulator's chunk ``k`` comes from a generator seeded with ``(seed, k, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit
from pydantic import Field

from tickflow.connectors.base import ConnectorConfig, Source, source
from tickflow.connectors.simulator import CHUNK_ROWS, SimulatorConfig, SimulatorSource, _rebatch
from tickflow.engine.errors import SourceError

FUNDING_SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("symbol", pa.string()),
    ("exchange", pa.string()),
    ("spot_price", pa.float64()),
    ("perp_price", pa.float64()),
    ("funding_rate", pa.float64()),
])

_CLAMP = 0.0005  # the +-0.05% band of the funding formula


class FundingSimulatorConfig(ConnectorConfig):
    """Simulated spot/perp prices and funding rates, for carry research without a feed."""

    kind: Literal["funding_simulator"] = "funding_simulator"
    symbols: Annotated[int, Field(ge=1, le=100_000)] | list[str] = Field(
        3, description="number of symbols or their names (as for `kind: simulator`)")
    rows: int = Field(100_000, ge=0, description="total number of rows")
    seed: int = Field(7, ge=0, description="random seed; the same seed gives the same rows")
    start: datetime = Field(datetime(2026, 1, 1, tzinfo=UTC), description="first timestamp")
    ticks_per_second: float = Field(50.0, gt=0, le=1e7, description="rows per second")
    premium_bps: float = Field(3.0, description="long-run mean of the perp premium, in bps")
    premium_vol_bps: float = Field(8.0, ge=0, description="stationary sd of the premium, bps")
    premium_half_life_s: float = Field(300.0, gt=0,
                                       description="half-life of premium shocks, seconds")
    interest_rate: float = Field(0.0001, description="interest component per funding interval")
    exchange: str = Field("sim-perp", min_length=1, description="value of `exchange`")

    def expected_keys(self) -> int | None:
        return self.symbols if isinstance(self.symbols, int) else len(self.symbols)


@njit(nogil=True, cache=True)
def _premium_path(code, ts_us, z, last_ts, last_p, mean, sd, theta):  # pragma: no cover
    """Exact OU steps per symbol at its own tick times; state carried in last_ts/last_p."""
    out = np.empty(code.shape[0])
    for i in range(code.shape[0]):
        k = code[i]
        if last_ts[k] < 0:
            p = mean + sd * z[i]
        else:
            dt = (ts_us[i] - last_ts[k]) * 1e-6
            decay = math.exp(-theta * dt)
            p = mean + (last_p[k] - mean) * decay + sd * math.sqrt(1.0 - decay * decay) * z[i]
        last_ts[k] = ts_us[i]
        last_p[k] = p
        out[i] = p
    return out


@source("funding_simulator", config=FundingSimulatorConfig,
        summary="simulated spot and perp prices with the predicted funding rate")
class FundingSimulatorSource(Source):
    """Spot (the tick simulator's mid), perp and funding-rate rows, one per tick."""

    config: FundingSimulatorConfig

    def schema(self) -> pa.Schema:
        return FUNDING_SCHEMA

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        unknown = [c for c in columns or [] if c not in FUNDING_SCHEMA.names]
        if unknown:
            raise SourceError(f"the funding simulator has no column(s) {', '.join(unknown)}")
        chunks = self._chunks()
        if columns is not None:
            chunks = (b.select(columns) for b in chunks)
        return _rebatch(chunks, batch_rows)

    def _chunks(self) -> Iterator[pa.RecordBatch]:
        cfg = self.config
        spot = SimulatorSource(SimulatorConfig(
            symbols=cfg.symbols, rows=cfg.rows, seed=cfg.seed, start=cfg.start,
            ticks_per_second=cfg.ticks_per_second, exchange=cfg.exchange), self.context)
        n_sym = cfg.symbols if isinstance(cfg.symbols, int) else len(cfg.symbols)
        last_ts = np.full(n_sym, -1, dtype=np.int64)
        last_p = np.zeros(n_sym)
        mean, sd = cfg.premium_bps * 1e-4, cfg.premium_vol_bps * 1e-4
        theta = math.log(2.0) / cfg.premium_half_life_s
        names: dict[str, int] = {}
        cols = ["timestamp", "symbol", "exchange", "best_bid", "best_ask"]
        for k, batch in enumerate(spot.batches(cols, CHUNK_ROWS)):
            symbols = batch.column("symbol")
            code = np.array([names.setdefault(s, len(names)) for s in symbols.to_pylist()],
                            dtype=np.int64)
            ts = batch.column("timestamp").cast(pa.int64()).to_numpy()
            z = np.random.default_rng((cfg.seed, k, 1)).standard_normal(batch.num_rows)
            premium = _premium_path(code, ts, z, last_ts, last_p, mean, sd, theta)
            mid = pc.divide(pc.add(batch.column("best_bid"), batch.column("best_ask")), 2.0)
            spot_price = mid.to_numpy(zero_copy_only=False)
            funding = premium + np.clip(cfg.interest_rate - premium, -_CLAMP, _CLAMP)
            yield pa.RecordBatch.from_arrays(
                [batch.column("timestamp"), symbols, batch.column("exchange"),
                 pa.array(spot_price), pa.array(spot_price * (1.0 + premium)),
                 pa.array(funding)], schema=FUNDING_SCHEMA)
