"""One tick-quality policy, applied by the driver: the same bad input gives the same counts in
research, backtest, live (through the embedded Kafka broker) and on Dask, dropped rows go to
the dead letters, and the defaults fail out-of-order files with a located message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.backtest.run import load_backtest_job, run_backtest
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.executors.dask import run_dask
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job

ROWS = 6_000
# (row, column, value): each a distinct broken row
BAD_PRICES = [(100, "price", float("nan")), (200, "price", float("inf")),
              (300, "price", 0.0), (400, "price", -5.0), (500, "best_ask", 0.0)]
CROSSED_ROW = 600
LATE_ROW = 3_000  # moved 10 minutes back: earlier than its key's previous row
EXPECTED = {"bad_price": 5, "crossed_quote": 1, "out_of_order": 1}

JOB = """\
name: quality
mode: {mode}
sources:
  - {{id: ticks, kind: parquet, path: {ticks}}}
steps:
  - {{kernel: ema, params: {{span: 20}}}}
quality: {quality}
{tail}
"""

RESEARCH_TAIL = "sinks:\n  - {{kind: parquet, path: {out}}}\n"
BACKTEST_TAIL = """\
strategy:
  long: {{entry: price > ema, exit: price < ema}}
  sizing: {{method: fixed_notional, notional: 1000}}
  output_dir: {out}
"""


@pytest.fixture(scope="module")
def bad_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("quality")
    clean = d / "clean.parquet"
    write_simulated_parquet(clean, rows=ROWS, symbols=4, seed=5, ticks_per_second=20)
    table = pq.read_table(clean)
    cols = {name: table.column(name).to_numpy(zero_copy_only=False).copy()
            for name in ("price", "best_bid", "best_ask")}
    for row, name, value in BAD_PRICES:
        cols[name][row] = value
    cols["best_bid"][CROSSED_ROW] = cols["best_ask"][CROSSED_ROW] + 1.0
    ts = table.column("timestamp").cast(pa.int64()).to_numpy().copy()
    ts[LATE_ROW] -= 600_000_000
    for name, values in cols.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    i = table.schema.get_field_index("timestamp")
    table = table.set_column(i, "timestamp",
                             pa.array(ts).cast(table.schema.field("timestamp").type))
    path = d / "bad.parquet"
    pq.write_table(table, path)
    return path


def _job(tmp_path: Path, ticks: Path, quality: str = "{out_of_order: drop}",
         mode: str = "research", name: str = "job") -> Path:
    out = tmp_path / f"{name}_out"
    tail = (RESEARCH_TAIL if mode == "research" else BACKTEST_TAIL).format(
        out=out / "features.parquet" if mode == "research" else out)
    path = tmp_path / f"{name}.yaml"
    path.write_text(JOB.format(mode=mode, ticks=ticks, quality=quality, tail=tail))
    return path


def _compiled(path: Path) -> Any:
    return compile_job(load_job(str(path)))


def test_clean_input_counts_nothing(tmp_path: Path, bad_ticks: Path) -> None:
    summary = run_local(_compiled(_job(tmp_path, bad_ticks.with_name("clean.parquet"))))
    assert summary.quality_counts == {} and summary.rows == ROWS


def test_research_backtest_and_dask_count_the_same(tmp_path: Path, bad_ticks: Path,
                                                   client: Any) -> None:
    research = run_local(_compiled(_job(tmp_path, bad_ticks)), workers=2)
    assert research.quality_counts == EXPECTED
    assert research.rows == ROWS - sum(EXPECTED.values())
    features = pq.read_table(tmp_path / "job_out" / "features.parquet")
    assert np.isfinite(features.column("ema").to_numpy()).all()  # nothing poisoned

    backtest = run_backtest(load_backtest_job(str(_job(tmp_path, bad_ticks, mode="backtest",
                                                       name="bt"))), write=False)
    assert backtest.data.quality_counts == EXPECTED
    assert any(note.startswith("tick quality: bad_price=5") for note in backtest.data.notes)

    dask = run_dask(_compiled(_job(tmp_path, bad_ticks, name="dask")), client=client,
                    partitions=2)
    assert dask.quality_counts == EXPECTED
    assert dask.rows == research.rows


LIVE = """\
name: quality-live
mode: live
sources:
  - id: ticks
    kind: kafka
    bootstrap: {bootstrap}
    topic: {topic}
    group_id: {topic}-g
    end_when_idle_s: 2
    dead_letter_path: {dead}
steps:
  - {{kernel: ema, params: {{span: 20}}}}
quality: {{out_of_order: drop}}
"""


def test_live_counts_the_same(tmp_path: Path, bad_ticks: Path, kafka_broker: Any) -> None:
    from tests.kafka.util import unique
    from tickflow.connectors.replay import replay_to_kafka
    from tickflow.engine.executors.live import run_live

    topic = unique("quality")
    assert replay_to_kafka(bad_ticks, kafka_broker.bootstrap, topic, "max") == ROWS
    path = tmp_path / "live.yaml"
    path.write_text(LIVE.format(bootstrap=kafka_broker.bootstrap, topic=topic,
                                dead=tmp_path / "dead.jsonl"))
    summary = run_live(_compiled(path))
    assert summary.quality_counts == EXPECTED
    assert summary.ticks == ROWS


def test_dropped_rows_go_to_the_dead_letters_and_keep_keeps_them(
        tmp_path: Path, bad_ticks: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    summary = run_local(_compiled(_job(
        tmp_path, bad_ticks, f"{{out_of_order: drop, dead_letter_path: {dead}}}")))
    records = read_dead_letters(dead)
    assert len(records) == sum(EXPECTED.values()) == sum(summary.quality_counts.values())
    by_row = {r["row"]: r["reason"] for r in records}
    assert by_row[CROSSED_ROW] == "crossed_quote" and by_row[LATE_ROW] == "out_of_order"
    assert all(by_row[row] == "bad_price" for row, _, _ in BAD_PRICES)
    assert all(r["source"] == "ticks" for r in records)

    kept = run_local(_compiled(_job(tmp_path, bad_ticks, "{bad_price: keep, out_of_order: drop}",
                                    name="keep")))
    assert kept.quality_counts == EXPECTED  # counted all the same
    assert kept.rows == ROWS - 1            # only the late row is dropped


def test_the_defaults_fail_out_of_order_input_with_source_key_and_row(
        tmp_path: Path, bad_ticks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = pq.read_table(bad_ticks).column("symbol")[LATE_ROW].as_py()
    assert main([str(_job(tmp_path, bad_ticks, "{}")), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"source 'ticks', key {key!r}, row {LATE_ROW}: timestamp" in err
    assert "quality.out_of_order" in err and "Traceback" not in err

    assert main([str(_job(tmp_path, bad_ticks, "{bad_price: fail}", name="f")), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"row {BAD_PRICES[0][0]}: bad price (price nan" in err


def test_sort_puts_late_rows_back_within_the_lateness(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    write_simulated_parquet(path, rows=ROWS, symbols=3, seed=8, ticks_per_second=50)
    table = pq.read_table(path)
    order = np.arange(ROWS)
    rng = np.random.default_rng(1)
    for start in range(0, ROWS - 8, 8):  # shuffle within blocks of 8 rows (well under 1s)
        rng.shuffle(order[start:start + 8])
    pq.write_table(table.take(pa.array(order)), tmp_path / "shuffled.parquet")
    sorted_run = run_local(_compiled(_job(tmp_path, path, name="ref")))
    shuffled = run_local(_compiled(_job(tmp_path, tmp_path / "shuffled.parquet",
                                        "{out_of_order: sort, lateness: 1s}", name="sorted")))
    assert shuffled.quality_counts["out_of_order"] > 100
    assert "too_late" not in shuffled.quality_counts
    assert shuffled.rows == sorted_run.rows == ROWS
    expected = pq.read_table(tmp_path / "ref_out" / "features.parquet")
    got = pq.read_table(tmp_path / "sorted_out" / "features.parquet")
    # per key, the same rows in time order, so the same features
    for sym in expected.column("symbol").unique().to_pylist():
        a = expected.filter(pa.compute.equal(expected.column("symbol"), sym))
        b = got.filter(pa.compute.equal(got.column("symbol"), sym))
        np.testing.assert_array_equal(a.column("ema").to_numpy(), b.column("ema").to_numpy())


@pytest.mark.parametrize("quality", ["{out_of_order: drop}", "{out_of_order: sort, lateness: 1s}"])
def test_a_checkpoint_records_the_quality_state_of_the_batches_the_graph_took(
        tmp_path: Path, bad_ticks: Path, quality: str) -> None:
    """The stage runs on the read-ahead thread, batches ahead of the loop: a run stopped just
    before the late row, resumed from its checkpoint, counts every broken row once and writes
    what an uninterrupted run writes."""
    import threading
    import time

    from tickflow.engine.runtime.driver import Driver
    from tickflow.engine.state.recovery import open_checkpointer

    # the same batches: `sort` releases rows batch by batch
    reference = run_local(_compiled(_job(tmp_path, bad_ticks, quality, name="ref")),
                          morsel_rows=500)
    path = _job(tmp_path, bad_ticks, quality, name="ck")
    path.write_text(path.read_text() + f"state: {{backend: rocksdb, path: {tmp_path / 'st'}, "
                                       f"checkpoint: {{every: 1}}}}\n")
    stop = threading.Event()
    seen = [0]

    def progress(rows: int) -> None:
        seen[0] += rows
        if seen[0] >= LATE_ROW - 500:
            time.sleep(0.3)  # the read-ahead checks the batches with the late row meanwhile
            stop.set()

    job = _compiled(path)
    first = Driver(job, morsel_rows=500, checkpointer=open_checkpointer(job), stop=stop,
                   progress=progress, final_is_end=True).run()
    assert first.rows < LATE_ROW
    assert not {"out_of_order", "too_late"} & set(first.quality_counts)
    job = _compiled(path)
    second = Driver(job, morsel_rows=500, checkpointer=open_checkpointer(job)).run()
    assert second.quality_counts == reference.quality_counts
    assert sum(reference.quality_counts.values()) == sum(EXPECTED.values())
    assert first.rows + second.rows == reference.rows
    expected = pq.read_table(tmp_path / "ref_out" / "features.parquet")
    got = pq.read_table(tmp_path / "ck_out" / "features.parquet")
    assert got.num_rows == expected.num_rows
    for name in ("symbol", "timestamp", "price", "ema"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_a_checkpoint_comes_after_the_dead_letters_of_the_batches_it_covers(
        tmp_path: Path, bad_ticks: Path) -> None:
    """A resume re-reads only what follows the checkpoint: the rows dropped from the batches
    it covers must be in the dead-letter file (not in the process's buffer) once it counts."""
    from tickflow.engine.runtime.driver import Driver
    from tickflow.engine.state.recovery import open_checkpointer

    dead = tmp_path / "dead.jsonl"
    path = _job(tmp_path, bad_ticks, f"{{out_of_order: drop, dead_letter_path: {dead}}}")
    path.write_text(path.read_text() + f"state: {{backend: rocksdb, path: {tmp_path / 'st'}, "
                                       f"checkpoint: {{every: 1}}}}\n")
    on_disk: list[int] = []
    seen = [0]

    def progress(rows: int) -> None:
        seen[0] += rows
        if not on_disk and seen[0] >= 1_400:  # the batches of rows 0-999 are checkpointed
            on_disk.append(len(dead.read_text().splitlines()) if dead.exists() else 0)

    job = _compiled(path)
    Driver(job, morsel_rows=500, checkpointer=open_checkpointer(job), progress=progress,
           final_is_end=True).run()
    broken_before_1000 = sum(1 for row, _, _ in BAD_PRICES if row < 1_000) + 1  # + crossed
    assert on_disk == [broken_before_1000]
    assert len(dead.read_text().splitlines()) == sum(EXPECTED.values())
