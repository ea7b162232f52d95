"""The live view never slows the pipeline: a replay on a pseudo-terminal runs as fast as piped,
the table redraws at most 10 times a second, bursts are summarised, and piped output keeps
every signal line."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.kafka.terminal import run_job
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.live_view import LiveView

ROOT = Path(__file__).resolve().parents[2]
ROWS = 60_000

pytestmark = pytest.mark.slow


def _batch(n: int, every: int, start: int = 0) -> pa.RecordBatch:
    """``n`` rows over 3 symbols; a buy on every ``every``-th row."""
    rows = np.arange(start, start + n)
    return pa.record_batch({
        "symbol": pa.array([f"S{i % 3}" for i in rows]),
        "price": pa.array(100.0 + rows % 7, pa.float64()),
        "best_bid": pa.array(99.0 + rows % 7, pa.float64()),
        "best_ask": pa.array(101.0 + rows % 7, pa.float64()),
        "rsi": pa.array(np.full(n, 25.0)), "zscore": pa.array(np.full(n, -2.5)),
        "cusum_stat": pa.array(np.zeros(n)),
        "buy": pa.array((rows % every == 0).astype(np.int8)),
    })


def test_plain_view_prints_every_signal_and_counts_per_symbol() -> None:
    out = io.StringIO()
    view = LiveView(["buy"], out=out, rich_view=False)
    for i in range(20):
        view.on_batch(_batch(300, 10, start=i * 300), np.zeros(300), lag=7)
    view.close()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("BUY ")]
    assert len(lines) == 600
    assert lines[0].startswith("BUY           S0         price=100")
    assert view.ticks == 6_000 and view.lag == 7 and view.signal_count == 600
    assert {s: v.signal_counts["buy"] for s, v in view.symbols.items()} == \
        {"S0": 200, "S1": 200, "S2": 200}
    assert {s: v.tick_count for s, v in view.symbols.items()} == \
        {"S0": 2_000, "S1": 2_000, "S2": 2_000}


def test_terminal_view_redraws_at_most_10_hz_and_summarises_bursts() -> None:
    out = io.StringIO()
    view = LiveView(["buy"], out=out, rich_view=True, refresh_hz=50)  # capped at 10
    batch = _batch(2_000, 5)
    start = time.perf_counter()
    batches = 0
    while time.perf_counter() - start < 1.5:
        view.on_batch(batch, np.zeros(batch.num_rows), lag=0)
        batches += 1
    elapsed = time.perf_counter() - start
    view.close()
    assert batches > 15  # on_batch is cheap: the pipeline thread is not held by drawing
    assert view.draw_cpu_s < 0.1 * elapsed  # drawing takes a small share of one core
    assert 1 <= view.redraw_count <= 10 * elapsed + 2
    text = out.getvalue()
    assert "signals since the last redraw (BUY " in text
    assert text.count("BUY           S") < batches * 400  # not one line per signal
    assert view.signal_count == batches * 400


def test_replay_on_a_terminal_runs_as_fast_as_piped(tmp_path: Path) -> None:
    capture = tmp_path / "sim.parquet"
    write_simulated_parquet(capture, rows=ROWS, symbols=4, seed=5)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "COLUMNS")}
    args = [sys.executable, "-m", "tickflow.engine.cli", str(ROOT / "jobs/live.yaml"),
            "--replay", str(capture), "--speed", "max"]
    # a short run first compiles (and caches) the kernels, which neither timed run should pay
    small = tmp_path / "small.parquet"
    write_simulated_parquet(small, rows=2_000, symbols=4, seed=5)
    run_job([*args[:-3], str(small), "--speed", "max"],
            {**env, "OUT_DIR": str(tmp_path / "w")}, terminal=False)
    # alternated, best of three each: the machine is shared, one run can be unlucky
    runs: dict[bool, list[tuple[float, str]]] = {False: [], True: []}
    for i in range(3):
        for terminal in (False, True):
            out_dir = str(tmp_path / f"{'tty' if terminal else 'piped'}{i}")
            runs[terminal].append(run_job(args, {**env, "OUT_DIR": out_dir},
                                          terminal=terminal))
    piped_s, piped = min(runs[False])
    tty_s, tty = min(runs[True])
    ratio = tty_s / piped_s
    print(f"replay of {ROWS:,} ticks: piped {piped_s:.2f} s, terminal {tty_s:.2f} s, "
          f"ratio {ratio:.2f}")
    assert f"ticks: {ROWS:,} of {ROWS:,} messages" in piped
    assert f"ticks: {ROWS:,} of {ROWS:,} messages" in tty
    assert ratio < 1.5
    # each redraw draws the table's title once
    redraws = tty.count("tickflow live:")
    assert 1 <= redraws <= 10 * tty_s + 2
    assert "signals since the last redraw" in tty
    # --no-view: plain lines on a terminal too
    _, plain = run_job([*args, "--no-view"], {**env, "OUT_DIR": str(tmp_path / "plain")},
                    terminal=True)
    assert "tickflow live:" not in plain and "\x1b[" not in plain.split("replaying")[-1]
    assert sum(line.startswith(("BUY ", "SELL ")) for line in plain.splitlines()) > 100


def test_a_quiet_view_counts_ticks_and_lag_only() -> None:
    """Nothing of a quiet view is ever drawn: it keeps no per-symbol or signal counts (its
    on_batch runs between batches on the driver's thread) and prints nothing."""
    out = io.StringIO()
    view = LiveView(["buy"], out=out, quiet=True)
    for i in range(5):
        view.on_batch(_batch(300, 10, start=i * 300), np.zeros(300), lag=3)
    view.close()
    assert view.ticks == 1_500 and view.lag == 3
    assert view.signal_count == 0 and not view.symbols
    assert out.getvalue() == ""
