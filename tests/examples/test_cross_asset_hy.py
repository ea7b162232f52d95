"""jobs/examples/cross_asset_hy.yaml on simulated ticks with one planted BTC jump.

Checked against a plain-numpy Hayashi-Yoshida built from the raw quotes, against the
simulator's factor structure (the correlation it was built with), and for the breakdown signal:
it fires after the planted jump, on both coins, and nowhere else.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tickflow.connectors.simulator import DEFAULT_SYMBOLS, write_simulated_parquet
from tickflow.engine.cli import main

JOB = ROOT / "jobs" / "examples" / "cross_asset_hy.yaml"
US = 1_000_000
JUMP_AT_US = 150 * US          # BTC's mid drops 1% for good 150 s into the run
JUMP = 0.99
PAIR = ("BTC-USD", "ETH-USD")


@pytest.fixture(scope="module")
def ticks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 simulated minutes of BTC, ETH and SOL quotes; BTC alone jumps at 150 s."""
    path = tmp_path_factory.mktemp("hy") / "ticks.parquet"
    write_simulated_parquet(path, rows=60_000, symbols=3, seed=11)
    t = pq.read_table(path)
    ts = t.column("timestamp").cast(pa.int64()).to_numpy()
    jump = (np.array(t.column("symbol").to_pylist()) == "BTC-USD") & (ts - ts[0] >= JUMP_AT_US)
    for name in ("best_bid", "best_ask"):
        values = t.column(name).to_numpy() * np.where(jump, JUMP, 1.0)
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(values))
    pq.write_table(t, path)
    return path


@pytest.fixture(scope="module")
def ticks(ticks_file: Path) -> pa.Table:
    return pq.read_table(ticks_file)


@pytest.fixture(scope="module")
def output(ticks_file: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("hy_out")
    mp = pytest.MonkeyPatch()
    mp.setenv("TICKS", str(ticks_file))
    mp.setenv("OUT_DIR", str(out))
    mp.setenv("WORKERS", "2")
    try:
        assert main(["run", str(JOB), "-q"]) == 0
    finally:
        mp.undo()
    return pq.read_table(out / "cross_asset_hy.parquet")


def intervals(ticks: pa.Table, symbol: str) -> dict[str, np.ndarray]:
    """The symbol's mid-quote return intervals (start, end], with the input row that ends each.

    A return covers the time from the previous row with a return to its own row, so the
    symbol's first return (on its second row) only marks where the first interval starts; rows
    with the time stamp of the one before share its interval (KERNELS.md).
    """
    rows = np.flatnonzero(np.array(ticks.column("symbol").to_pylist()) == symbol)
    ts = ticks.column("timestamp").cast(pa.int64()).to_numpy()[rows]
    bid, ask = (ticks.column(c).to_numpy()[rows] for c in ("best_bid", "best_ask"))
    r = np.diff(np.log((bid + ask) / 2))            # r[i - 1]: the return on rows[i]
    kept: list[tuple[int, int, int, float]] = []
    last = ts[1]
    for i in range(2, len(rows)):
        if ts[i] > last:
            kept.append((rows[i], last, ts[i], r[i - 1]))
            last = ts[i]
        elif kept:
            kept.append((rows[i], kept[-1][1], kept[-1][2], r[i - 1]))
    row, start, end, ret = (np.array(c) for c in zip(*kept, strict=True))
    return {"row": row, "start": start, "end": end, "r": ret}


def in_window(x: dict, row: int, t: int, span_us: int) -> tuple[np.ndarray, ...]:
    keep = (x["row"] <= row) & (x["end"] > t - span_us)
    return x["start"][keep], x["end"][keep], x["r"][keep]


def hy_at(a: dict, b: dict, row: int, t: int, span_us: int) -> tuple[float, float]:
    """(covariance, correlation) from the definition at input row ``row`` (time ``t``): every
    pair of overlapping intervals, by brute force."""
    (sa, ea, ra), (sb, eb, rb) = in_window(a, row, t, span_us), in_window(b, row, t, span_us)
    overlap = np.maximum(sa[:, None], sb[None, :]) < np.minimum(ea[:, None], eb[None, :])
    cov = float(np.outer(ra, rb)[overlap].sum())
    return cov, cov / math.sqrt(float(ra @ ra) * float(rb @ rb))


def hy_corr_sorted(a: dict, b: dict, row: int, t: int, span_us: int) -> float:
    """The same correlation in O(n log n), for long windows: b's intervals tile its time axis
    in order, so those overlapping an interval of a are one run, found by binary search."""
    (sa, ea, ra), (sb, eb, rb) = in_window(a, row, t, span_us), in_window(b, row, t, span_us)
    lo = np.searchsorted(eb, sa, side="right")       # first b ending after a starts
    hi = np.searchsorted(sb, ea, side="left")        # first b starting at or after a ends
    cum = np.concatenate(([0.0], np.cumsum(rb)))
    cov = float(ra @ (cum[np.maximum(hi, lo)] - cum[lo]))
    return cov / math.sqrt(float(ra @ ra) * float(rb @ rb))


def test_only_the_pair_is_kept_in_input_order(ticks: pa.Table, output: pa.Table) -> None:
    pair_rows = pc.is_in(ticks.column("symbol"), pa.array(PAIR))
    expected = ticks.filter(pair_rows).column("timestamp")
    n = output.num_rows
    # only the first rows, before both coins have a return interval, are dropped
    assert 0 < len(expected) - n < 10
    assert output.column("timestamp").equals(expected.slice(len(expected) - n))
    assert not pc.any(pc.is_nan(output.column("hy_corr"))).as_py()


def test_hy_equals_a_plain_numpy_hayashi_yoshida(ticks: pa.Table, output: pa.Table) -> None:
    a, b = intervals(ticks, PAIR[0]), intervals(ticks, PAIR[1])
    pair_rows = np.flatnonzero(pc.is_in(ticks.column("symbol"), pa.array(PAIR)).to_numpy(
        zero_copy_only=False))[-output.num_rows:]
    ts = ticks.column("timestamp").cast(pa.int64()).to_numpy()
    got = {c: output.column(c).to_numpy() for c in ("hy_cov", "hy_corr", "hy_corr_10m")}
    for j in np.linspace(0, output.num_rows - 1, 15).astype(int):
        row, t = pair_rows[j], ts[pair_rows[j]]
        cov, corr = hy_at(a, b, row, t, 60 * US)
        assert got["hy_cov"][j] == pytest.approx(cov, rel=1e-9, abs=1e-18), j
        assert got["hy_corr"][j] == pytest.approx(corr, rel=1e-9), j
        assert got["hy_corr_10m"][j] == pytest.approx(
            hy_corr_sorted(a, b, row, t, 600 * US), rel=1e-9), j
        assert hy_corr_sorted(a, b, row, t, 60 * US) == pytest.approx(corr, rel=1e-9)


def test_the_simulators_factor_correlation_is_recovered(output: pa.Table) -> None:
    """The simulator builds BTC and ETH from one market factor with variance shares 0.70 and
    0.65, so their diffusive correlation is sqrt(0.70 * 0.65) = 0.67 at any horizon."""
    share = [DEFAULT_SYMBOLS[s][3] for s in PAIR]
    rho = math.sqrt(share[0] * share[1])
    ts = output.column("timestamp").cast(pa.int64()).to_numpy()
    ts = ts - ts[0]
    corr = output.column("hy_corr").to_numpy()
    calm = (ts > 60 * US) & (ts < JUMP_AT_US)           # a full window, before the jump
    assert np.median(corr[calm]) == pytest.approx(rho, abs=0.05)
    assert np.percentile(corr[calm], 5) > 0.5


def test_the_breakdown_fires_after_the_btc_jump_on_both_coins(output: pa.Table) -> None:
    ts = output.column("timestamp").cast(pa.int64()).to_numpy()
    ts = ts - ts[0]
    flag = output.column("corr_breakdown").to_numpy()
    fired = np.flatnonzero(flag == 1)
    assert sorted(np.array(output.column("symbol").to_pylist())[fired]) == list(PAIR)
    assert ((ts[fired] >= JUMP_AT_US) & (ts[fired] < JUMP_AT_US + 10 * US)).all()
    # the 60 s correlation stays low while the jump is in its window, then recovers
    corr = output.column("hy_corr").to_numpy()
    assert (corr[(ts > JUMP_AT_US + 5 * US) & (ts < JUMP_AT_US + 55 * US)] < 0.2).all()
    assert np.median(corr[ts > JUMP_AT_US + 65 * US]) > 0.5


def test_the_breakdown_is_the_rule_on_each_coins_rows(output: pa.Table) -> None:
    symbols = np.array(output.column("symbol").to_pylist())
    smooth = output.column("hy_corr_5s").to_numpy()
    flag = output.column("corr_breakdown").to_numpy()
    for symbol in PAIR:
        x = smooth[symbols == symbol]
        with np.errstate(invalid="ignore"):
            expected = np.concatenate(([False], (x[1:] < 0.2) & (x[:-1] >= 0.2)))
        np.testing.assert_array_equal(flag[symbols == symbol], expected.astype(np.int8))


@pytest.mark.parametrize(("page", "job"), [
    ("cross-asset-correlation.md", "jobs/examples/cross_asset_hy.yaml"),
    ("multi-timeframe.md", "jobs/examples/multi_timeframe.yaml"),  # run by tests/operators
])
def test_the_job_is_in_the_cookbook(page: str, job: str) -> None:
    cookbook = ROOT / "docs" / "cookbook"
    assert job in (cookbook / page).read_text()
    assert f"]({page})" in (cookbook / "README.md").read_text()
    assert (ROOT / job).exists()

