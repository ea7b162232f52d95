"""The simulator source: canonical, deterministic, batch-size independent, and market-like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext
from tickflow.connectors.simulator import (
    CHUNK_ROWS,
    SimulatorConfig,
    SimulatorSource,
    symbol_names,
    write_simulated_parquet,
)
from tickflow.engine.errors import SourceError

CTX = RunContext(job_name="test")


def simulate(batch_rows: int = 65_536, columns: list[str] | None = None,
             **settings: object) -> pa.Table:
    src = SimulatorSource(SimulatorConfig(kind="simulator", **settings), CTX)
    batches = list(src.batches(columns, batch_rows))
    schema = src.schema() if columns is None else pa.schema(
        [CANONICAL_TICK_SCHEMA.field(c) for c in columns])
    return pa.Table.from_batches(batches, schema=schema)


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    """Long enough (1.5M ticks, about two hours) to contain volatility regimes."""
    return simulate(rows=1_500_000).to_pandas()


def test_schema_is_canonical() -> None:
    table = simulate(rows=1_000, symbols=3)
    assert table.schema.equals(CANONICAL_TICK_SCHEMA)
    src = SimulatorSource(SimulatorConfig(kind="simulator"), CTX)
    assert src.schema().equals(CANONICAL_TICK_SCHEMA)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = simulate(rows=80_000, symbols=5, seed=11)
    b = simulate(rows=80_000, symbols=5, seed=11)
    c = simulate(rows=80_000, symbols=5, seed=12)
    assert a.equals(b)
    assert not a.column("price").equals(c.column("price"))


@pytest.mark.parametrize("batch_rows", [1_000, 7_777, CHUNK_ROWS, 200_000])
def test_identical_for_any_batch_size(batch_rows: int) -> None:
    reference = simulate(rows=150_001, symbols=6, seed=3, batch_rows=65_536)
    got = simulate(rows=150_001, symbols=6, seed=3, batch_rows=batch_rows)
    assert got.equals(reference)
    sizes = [b.num_rows for b in got.to_batches()]
    assert all(s == batch_rows for s in sizes[:-1]) and 0 < sizes[-1] <= batch_rows


def test_prefix_of_a_longer_run_equals_a_shorter_run() -> None:
    long = simulate(rows=3 * CHUNK_ROWS + 5, symbols=4, seed=5)
    short = simulate(rows=CHUNK_ROWS + 123, symbols=4, seed=5)
    assert long.slice(0, short.num_rows).equals(short)


def test_projection() -> None:
    full = simulate(rows=10_000, symbols=3)
    proj = simulate(rows=10_000, symbols=3, columns=["symbol", "best_ask", "timestamp"])
    assert proj.column_names == ["symbol", "best_ask", "timestamp"]
    for name in proj.column_names:
        assert proj.column(name).equals(full.column(name))
    src = SimulatorSource(SimulatorConfig(kind="simulator"), CTX)
    with pytest.raises(SourceError, match=r"no column.*'bid'"):
        src.batches(["bid"])


def test_symbol_names_and_counts() -> None:
    names = symbol_names(14)
    assert names[:3] == ["BTC-USD", "ETH-USD", "SOL-USD"] and names[-1] == "ATOM-USD"
    assert symbol_names(16)[14:] == ["SYM00015-USD", "SYM00016-USD"]
    table = simulate(rows=20_000, symbols=["BTC-USD", "FOO-EUR"]).to_pandas()
    assert set(table.symbol) == {"BTC-USD", "FOO-EUR"}
    assert set(simulate(rows=50_000, symbols=16).to_pandas().symbol) == set(symbol_names(16))
    assert simulate(rows=0).num_rows == 0
    with pytest.raises(ValidationError):
        SimulatorConfig(kind="simulator", symbols=0)
    with pytest.raises(ValidationError):
        SimulatorConfig(kind="simulator", symbols=["A", "A"])
    with pytest.raises(ValidationError):
        SimulatorConfig(kind="simulator", rows=10, bogus=1)


def test_start_and_exchange() -> None:
    df = simulate(rows=1_000, symbols=2, start="2025-06-01T12:00:00+02:00",
                  exchange="coinbase").to_pandas()
    assert df.timestamp.iloc[0] >= pd.Timestamp("2025-06-01T10:00:00Z")
    assert df.timestamp.iloc[-1] < pd.Timestamp("2025-06-01T10:01:00Z")
    assert (df.exchange == "coinbase").all()


def test_quotes_and_trades_are_consistent(ticks: pd.DataFrame) -> None:
    df = ticks
    assert (df.best_bid > 0).all()
    assert (df.best_bid < df.best_ask).all()
    assert (df.best_bid_size > 0).all() and (df.best_ask_size > 0).all()
    trades = df.last_size.notna()
    assert 0.3 < trades.mean() < 0.5
    assert (df.last_size[trades] > 0).all()
    # a trade prints at the bid or the ask of its own tick
    t = df[trades]
    assert ((t.price == t.best_bid) | (t.price == t.best_ask)).all()
    # spreads are 1 to a few ticks, a fraction of a basis point to a few
    spread_bps = (df.best_ask - df.best_bid) / df.best_bid * 1e4
    assert spread_bps.median() < 1.0 and spread_bps.max() < 20
    # price levels follow the products
    last = df.groupby("symbol").price.last()
    assert 30_000 < last["BTC-USD"] < 120_000
    assert 1_000 < last["ETH-USD"] < 6_000
    assert 0.01 < last["DOGE-USD"] < 1.0


def test_ordering_sequences_and_volume(ticks: pd.DataFrame) -> None:
    df = ticks
    assert df.timestamp.is_monotonic_increasing
    ticks_per_second = len(df) / (df.timestamp.iloc[-1] - df.timestamp.iloc[0]).total_seconds()
    assert 190 < ticks_per_second < 210
    for _, g in df.groupby("symbol"):
        seq = g.sequence.to_numpy()
        assert seq[0] == 1 and (np.diff(seq) == 1).all()
        vol = g.volume_24h.to_numpy()
        assert (np.diff(vol) >= 0).all()
        traded = g.last_size.notna().to_numpy()[1:]
        assert (np.diff(vol)[traded] > 0).all()
    # BTC is the busiest product
    counts = df.symbol.value_counts()
    assert counts.index[0] == "BTC-USD" and len(counts) == 14


def test_cross_symbol_correlations_are_positive(ticks: pd.DataFrame) -> None:
    prices = (ticks.set_index("timestamp").groupby("symbol").price.resample("1s").last()
              .unstack(0).ffill())
    corr = np.log(prices).diff().corr().to_numpy()
    off = corr[~np.eye(len(corr), dtype=bool)]
    assert (off > 0.1).all()
    assert 0.3 < off.mean() < 0.7


def test_volatility_regimes_and_jumps(ticks: pd.DataFrame) -> None:
    prices = (ticks.set_index("timestamp").groupby("symbol").price.resample("1min").last()
              .unstack(0).ffill())
    rets = np.log(prices["ETH-USD"]).diff().dropna()
    vol = rets.rolling(10).std().dropna()
    assert vol.max() > 2.0 * vol.min()  # calm and stressed spells
    # jumps large enough to trip a CUSUM with k=0.0005, h=0.01 on tick returns
    tick_ret = np.log(ticks.price).groupby(ticks.symbol).diff().abs()
    assert (tick_ret > 0.0105).sum() >= 5


def test_generates_fast() -> None:
    import time

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=2_000_000), CTX)
    start = time.process_time()  # CPU time: a busy machine (or a test beside it) can't fail it
    rows = sum(b.num_rows for b in src.batches(None, 65_536))
    assert rows == 2_000_000
    assert time.process_time() - start < 3.0  # about 0.3 s per million here


def test_write_simulated_parquet(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "ticks.parquet"
    info = write_simulated_parquet(out, rows=100_000, symbols=3, seed=9, row_group_rows=32_768)
    assert info["rows"] == 100_000 and info["symbols"] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    table = pq.read_table(out)
    assert table.schema.equals(CANONICAL_TICK_SCHEMA, check_metadata=False)
    assert table.replace_schema_metadata(None).equals(simulate(rows=100_000, symbols=3, seed=9))
    meta = pq.read_metadata(out)
    assert meta.num_row_groups == 4
    assert b'"seed": 9' in meta.metadata[b"tickflow.simulator"]
    assert [p.name for p in out.parent.iterdir()] == ["ticks.parquet"]
