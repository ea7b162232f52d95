"""Dead letters written in bulk (``DeadLetters.add_rows``, what the quality stage uses) are the
same lines as one ``add`` a row: same payload text for odd values (NaN, inf, None, unicode,
escapes, timestamps), same counts, same forwarded records, at a fraction of the CPU a row."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tickflow.connectors import dead_letter_rows
from tickflow.connectors.dead_letter import DeadLetters, read_dead_letters
from tickflow.connectors.dead_letter_rows import lines, payloads
from tickflow.engine.runtime.quality import QualitySpec, QualityStage

UTC = pa.timestamp("us", tz="UTC")


def odd_rows() -> pa.Table:
    floats = [float("nan"), float("inf"), -float("inf"), None, 0.0, -0.0, 60000.0, 0.1,
              1e-5, 1e-4, 1e15, 1e16, 123456789012.12345, 1307.18954248366, 5e-324, -2.5]
    n = len(floats)
    strings = ["BTC-USD", "ÉTH-€", None, 'quote " here', "back\\slash", "new\nline", "\x00\x1f",
               "{brace}", "😀 emoji", "", "tab\t", "/", "\u2028", "ascii", "{}", "z"]
    stamps = [0, 99_333, 1_767_225_600_000_000, None, -1, -62_135_596_800_000_000,
              253_402_300_799_999_999, 1_000_000] + [1_767_225_600_123_456] * (n - 8)
    return pa.table({
        "timestamp": pa.array(stamps, type=pa.int64()).cast(UTC),
        "naive_ms": pa.array([s // 1000 if s is not None else None for s in stamps],
                             type=pa.int64()).cast(pa.timestamp("ms")),
        "ns": pa.array([s * 1000 if s is not None and abs(s) < 2**53 else None
                        for s in stamps], type=pa.int64()).cast(pa.timestamp("ns", "UTC")),
        "symbol": pa.array(strings),
        "plain": pa.array(["BTC-USD", "ETH-USD"] * (n // 2)),
        "key": pa.array(strings).dictionary_encode(),
        "price": pa.array(floats, type=pa.float64()),
        "size32": pa.array([0.1, None, 1.5, float("nan")] * (n // 4), type=pa.float32()),
        "sequence": pa.array([1, None, -(2**63), 2**62] * (n // 4), type=pa.int64()),
        "big": pa.array([2**64 - 1] * n, type=pa.uint64()),
        "flag": pa.array([True, False, None, True] * (n // 4)),
        "nothing": pa.nulls(n),
        "levels": pa.array([[1.5, float("nan")], None, [], [2]] * (n // 4),
                           type=pa.list_(pa.float64())),
        "day": pa.array([0, 19_000, None, -1] * (n // 4), type=pa.int32()).cast(pa.date32()),
        "odd {name} \"é\"": pa.array(range(n)),
    })


def test_bulk_payloads_are_the_row_paths_text_for_odd_values() -> None:
    rows = odd_rows()
    expected = [json.dumps(r, default=str) for r in rows.to_pylist()]
    assert payloads(rows).to_pylist() == expected
    escaped = payloads(rows, escaped=True).to_pylist()
    assert escaped == [json.dumps(text, ensure_ascii=False)[1:-1] for text in expected]
    for batch in rows.to_batches(max_chunksize=5):  # batches, and columns one at a time
        assert payloads(batch).to_pylist() == [json.dumps(r, default=str)
                                               for r in batch.to_pylist()]
        for name in batch.schema.names:
            one = batch.select([name])
            assert payloads(one).to_pylist() == [json.dumps(r, default=str)
                                                 for r in one.to_pylist()], name


def test_random_floats_keep_their_repr() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    values = np.concatenate([rng.random(n) * 10.0 ** rng.integers(-8, 20, n),
                             np.round(rng.standard_normal(n) * 1e5, 2),
                             np.frombuffer(rng.bytes(8 * n), dtype=np.float64)])
    rows = pa.table({"x": values})
    assert payloads(rows).to_pylist() == [json.dumps(r) for r in rows.to_pylist()]


def _pinned(path: Path, sent: list[tuple[bytes, str]]) -> DeadLetters:
    dead = DeadLetters(path, forward=lambda line, reason: sent.append((line, reason)),
                       source="job")
    dead.clock = lambda: 1_767_225_600.25
    return dead


@pytest.mark.parametrize("bulk_rows", [1, 1_000_000], ids=["in-bulk", "small-row-by-row"])
def test_add_rows_writes_counts_and_forwards_what_add_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_rows: int) -> None:
    monkeypatch.setattr(dead_letter_rows, "BULK_ROWS", bulk_rows)
    rows = odd_rows()
    reasons = ["bad_price", "crossed_quote", "out_of_order", "too_late"] * (rows.num_rows // 4)
    numbers = [7 * i + 1_000_000_000_000 for i in range(rows.num_rows)]
    by_row: list[tuple[bytes, str]] = []
    one = _pinned(tmp_path / "rows.jsonl", by_row)
    for row, reason, number in zip(rows.to_pylist(), reasons, numbers, strict=True):
        one.add(reason, row, source="ticks", row=number)
    in_bulk: list[tuple[bytes, str]] = []
    bulk = _pinned(tmp_path / "bulk.jsonl", in_bulk)
    bulk.add_rows(rows, reasons, numbers, source="ticks")
    bulk.add_rows(rows.slice(0, 0), [], [])  # nothing: no line, no count
    one.close()
    bulk.close()
    text = (tmp_path / "rows.jsonl").read_text(encoding="utf-8")
    assert (tmp_path / "bulk.jsonl").read_text(encoding="utf-8") == text
    assert len(text.splitlines()) == rows.num_rows
    assert in_bulk == by_row and bulk.counts == one.counts
    record = read_dead_letters(tmp_path / "bulk.jsonl")[0]
    assert record["source"] == "ticks" and record["row"] == numbers[0]
    assert math.isnan(json.loads(record["payload"])["price"])
    with pytest.raises(ValueError, match="one reason"):
        bulk.add_rows(rows, reasons[:-1], numbers)


class RowByRow:
    """A dead-letter sink whose ``add_rows`` writes each row through ``add``."""

    def __init__(self, inner: DeadLetters):
        self.inner = inner

    def add_rows(self, rows: pa.Table | pa.RecordBatch, reasons: list[str],
                 numbers: list[int], *, source: str) -> None:
        for row, reason, number in zip(rows.to_pylist(), reasons, numbers, strict=True):
            self.inner.add(reason, row, source=source, row=number)


def quality_batches() -> list[pa.RecordBatch]:
    n = 4_001
    rng = np.random.default_rng(5)
    ts = np.arange(n, dtype=np.int64) * 1_000 + 1_767_225_600_000_000
    ts[rng.choice(n, 300, replace=False)] -= 10_000_000  # back in time: out of order
    price = 60_000 + rng.standard_normal(n)
    bid, ask = price - 0.5, price + 0.5
    price[rng.choice(n, 50, replace=False)] = np.nan
    price[rng.choice(n, 20, replace=False)] = -1.0
    bid[rng.choice(n, 30, replace=False)] = np.inf
    crossed = rng.choice(n, 40, replace=False)
    bid[crossed] = ask[crossed] + 1
    symbols = np.array(["BTC-USD", "ÉTH-€", "SOL-USD"])[rng.integers(0, 3, n)]
    table = pa.table({"timestamp": pa.array(ts).cast(UTC), "symbol": symbols.tolist(),
                      "price": price, "best_bid": bid, "best_ask": ask})
    return table.to_batches(max_chunksize=250)  # ~25 dropped a batch, and a 1-row tail


@pytest.mark.parametrize("bulk_rows", [1, dead_letter_rows.BULK_ROWS])
def test_the_quality_stage_writes_the_same_file_in_bulk_as_row_by_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_rows: int) -> None:
    monkeypatch.setattr(dead_letter_rows, "BULK_ROWS", bulk_rows)
    files = []
    for name, wrap in (("rows", RowByRow), ("bulk", lambda d: d)):
        dead = _pinned(tmp_path / f"{name}.jsonl", [])
        stage = QualityStage(QualitySpec(out_of_order="drop"), "ticks", "symbol", wrap(dead),
                             streaming=True)
        kept = sum(stage.check(b).num_rows for b in quality_batches())
        dead.close()
        files.append((tmp_path / f"{name}.jsonl").read_text(encoding="utf-8"))
        counts = stage.summary()
    assert files[0] == files[1]
    records = [json.loads(line) for line in files[1].splitlines()]
    assert len(records) == sum(counts.values()) == 4_001 - kept
    assert {r["reason"] for r in records} == {"bad_price", "crossed_quote", "out_of_order"}
    assert len({r["row"] for r in records}) == len(records)  # each dropped row once


def test_bulk_costs_a_fraction_of_the_row_paths_cpu_a_row(tmp_path: Path) -> None:
    rows = pa.Table.from_batches(quality_batches()).combine_chunks()
    rows = pa.concat_tables([rows] * 5).combine_chunks()  # 20,000 rows
    reasons, numbers = ["out_of_order"] * rows.num_rows, list(range(rows.num_rows))

    def row_path() -> None:
        for row, reason, number in zip(rows.to_pylist(), reasons, numbers, strict=True):
            record = {"time": 1.0, "source": "s", "reason": reason,
                      "payload": json.dumps(row, default=str), "row": number}
            json.dumps(record, default=str, ensure_ascii=False)

    def cpu(fn: Any) -> float:
        best = math.inf
        for _ in range(3):
            start = time.thread_time()
            fn()
            best = min(best, time.thread_time() - start)
        return best

    bulk = cpu(lambda: lines(rows, reasons, numbers, 1.0, "s"))
    assert bulk < 0.5 * cpu(row_path)  # measured ~0.15 (bench/quality_dead_letters.py)
