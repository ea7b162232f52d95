"""``kind: venue_simulator``: top-of-book quotes of one venue in a simulated multi-venue market.

Why: arbitrage research needs two or more venues quoting the *same* market over the same
minutes, and the recorded captures we may use never overlap in time. So
every venue is derived from one seeded "true" mid-price path per symbol: a venue quotes that
mid as it was ``lag_ms`` ago, with its own noise, half-spread and top-of-book sizes, and a venue
with ``dislocations_per_min > 0`` now and then moves its quotes away from the others by
``dislocation_bps`` (a random sign and size up to that) for ``dislocation_s`` (random up to
that): the arbitrage windows a monitor must find. The same ``seed`` and ``symbols`` give every
venue the same true path, so two sources in one job form one market. Deterministic.

:func:`venue_quotes` returns the quotes as a canonical-tick table; the loopback Binance and
Kraken servers replay them as their protocol's frames.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from tickflow.connectors.base import (
    CANONICAL_TICK_SCHEMA,
    ConnectorConfig,
    RunContext,
    Source,
    source,
)

DEFAULT_VENUE_SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
_START_PRICES = {"BTC-USD": 65_000.0, "ETH-USD": 3_200.0, "SOL-USD": 150.0}
_GRID_US = 10_000  # the true path moves every 10 ms


class VenueSimulatorConfig(ConnectorConfig):
    """One venue's quotes in a simulated market shared by every venue with the same seed."""

    kind: Literal["venue_simulator"] = "venue_simulator"
    venue: str = Field(min_length=1, description="value of the `exchange` column")
    symbols: list[str] = Field(list(DEFAULT_VENUE_SYMBOLS), min_length=1,
                               description="symbols, common naming")
    seed: int = Field(7, ge=0, description="seed of the true path (same for every venue)")
    duration_s: float = Field(600.0, gt=0, le=86_400 * 7, description="simulated time span")
    quotes_per_s: float = Field(4.0, gt=0, le=10_000,
                                description="mean quote updates per second per symbol")
    lag_ms: float = Field(0.0, ge=0, description="this venue quotes the true mid this late")
    half_spread_bps: float = Field(1.0, ge=0, description="half the quoted spread")
    noise_bps: float = Field(0.5, ge=0, description="venue noise on the mid (std dev)")
    volatility_bps: float = Field(0.3, ge=0, description="true mid move per 10 ms (std dev)")
    dislocations_per_min: float = Field(0.0, ge=0, description="mean dislocations per minute "
                                                               "per symbol")
    dislocation_bps: float = Field(80.0, ge=0, description="largest dislocation size")
    dislocation_s: float = Field(6.0, gt=0, description="longest dislocation")
    start: datetime = Field(datetime(2026, 1, 1, tzinfo=UTC), description="first timestamp")

    def expected_keys(self) -> int | None:
        return len(self.symbols)


def _true_path(seed: int, symbol: str, steps: int, volatility_bps: float) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
    walk = np.cumsum(rng.normal(0.0, volatility_bps * 1e-4, steps))
    return _START_PRICES.get(symbol, 100.0) * np.exp(walk)


def venue_quotes(config: VenueSimulatorConfig) -> pa.Table:
    """Every quote of the venue, in time order, as a ``CANONICAL_TICK_SCHEMA`` table."""
    c = config
    t0 = int(c.start.timestamp() * 1_000_000)
    span_us = int(c.duration_s * 1_000_000)
    steps = span_us // _GRID_US + 2
    venue_seed = zlib.crc32(c.venue.encode())
    parts = []
    for symbol in c.symbols:
        mid = _true_path(c.seed, symbol, steps, c.volatility_bps)
        rng = np.random.default_rng([c.seed, venue_seed, zlib.crc32(symbol.encode())])
        n = max(1, int(rng.poisson(c.quotes_per_s * c.duration_s)))
        times = np.sort(rng.integers(0, span_us, n))
        lagged = np.clip((times - int(c.lag_ms * 1000)) // _GRID_US, 0, steps - 1)
        venue_mid = mid[lagged] * (1 + rng.normal(0.0, c.noise_bps * 1e-4, n))
        if c.dislocations_per_min > 0:
            count = int(rng.poisson(c.dislocations_per_min * c.duration_s / 60))
            for start, length, size in zip(rng.integers(0, span_us, count),
                                           rng.uniform(0.05, 1.0, count) * c.dislocation_s,
                                           rng.uniform(0.2, 1.0, count) * c.dislocation_bps
                                           * rng.choice([-1.0, 1.0], count), strict=True):
                inside = (times >= start) & (times < start + length * 1_000_000)
                venue_mid[inside] *= 1 + size * 1e-4
        half = venue_mid * c.half_spread_bps * 1e-4
        parts.append((times + t0, symbol, venue_mid, venue_mid - half, venue_mid + half,
                      rng.lognormal(0.0, 1.0, n), rng.lognormal(0.0, 1.0, n)))
    ts = np.concatenate([p[0] for p in parts])
    order = np.argsort(ts, kind="stable")
    n_total = len(ts)
    return pa.table({
        "timestamp": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
        "symbol": pa.array(np.concatenate([[p[1]] * len(p[0]) for p in parts])[order],
                           pa.string()),
        "exchange": pa.array([c.venue] * n_total, pa.string()),
        "price": np.concatenate([p[2] for p in parts])[order],
        "best_bid": np.round(np.concatenate([p[3] for p in parts])[order], 6),
        "best_ask": np.round(np.concatenate([p[4] for p in parts])[order], 6),
        "best_bid_size": np.round(np.concatenate([p[5] for p in parts])[order], 6),
        "best_ask_size": np.round(np.concatenate([p[6] for p in parts])[order], 6),
        "last_size": pa.nulls(n_total, pa.float64()),
        "volume_24h": pa.nulls(n_total, pa.float64()),
        "sequence": np.arange(n_total, dtype=np.int64),
    }, schema=CANONICAL_TICK_SCHEMA)


def venue_config(venue: str, symbols: Sequence[str] = DEFAULT_VENUE_SYMBOLS,
                 **settings: object) -> VenueSimulatorConfig:
    """A config from keyword settings (for servers, benchmarks and tests)."""
    return VenueSimulatorConfig(venue=venue, symbols=list(symbols), **settings)


@source("venue_simulator", config=VenueSimulatorConfig,
        summary="one venue's top-of-book quotes in a seeded multi-venue market (arbitrage)")
class VenueSimulatorSource(Source):
    """Yields :func:`venue_quotes` in batches."""

    config: VenueSimulatorConfig

    def __init__(self, config: VenueSimulatorConfig, context: RunContext):
        super().__init__(config, context)

    def schema(self) -> pa.Schema:
        return CANONICAL_TICK_SCHEMA

    def batches(self, columns: list[str] | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        table = venue_quotes(self.config)
        if columns:
            table = table.select(columns)
        yield from table.to_batches(max_chunksize=batch_rows)
