"""The parquet source and sink: roundtrips, projection, streaming, errors, provenance, atomicity."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, RunContext
from tickflow.connectors.parquet import (
    ParquetSink,
    ParquetSinkConfig,
    ParquetSource,
    ParquetSourceConfig,
    read_provenance,
)
from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource
from tickflow.engine.errors import SourceError

JOB_YAML = "name: demo\nmode: research\nsources:\n  - kind: simulator\n"
CTX = RunContext(job_name="demo", job_path="jobs/demo.yaml", job_yaml=JOB_YAML,
                 job_sha256=hashlib.sha256(JOB_YAML.encode()).hexdigest(),
                 tickflow_version="0.1.0", git_commit="0123456789abcdef")


def ticks(rows: int, seed: int = 1) -> pa.Table:
    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=4, seed=seed), CTX)
    return pa.Table.from_batches(list(src.batches(None, 10_000)), schema=src.schema())


def write(path: Path, table: pa.Table, **options: object) -> str | None:
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(path), **options), CTX)
    sink.open(table.schema)
    for batch in table.to_batches(max_chunksize=7_000):
        sink.write(batch)
    return sink.close()


def read(path: str, columns: list[str] | None = None, batch_rows: int = 65_536,
         config_columns: list[str] | None = None) -> pa.Table:
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=path, columns=config_columns),
                        CTX)
    return pa.Table.from_batches(list(src.batches(columns, batch_rows)),
                                 schema=pa.schema([src.schema().field(c)
                                                   for c in (columns or src.schema().names)]))


def test_file_roundtrip(tmp_path: Path) -> None:
    table = ticks(50_000)
    out = tmp_path / "a" / "b" / "out.parquet"  # parent directories are created
    summary = write(out, table, row_group_rows=16_384)
    assert summary is not None and "50,000 rows" in summary and str(out) in summary
    back = read(str(out))
    assert back.schema.equals(CANONICAL_TICK_SCHEMA)
    assert back.equals(table)
    assert pq.read_metadata(out).num_row_groups == 4  # 16384 * 3 + rest
    # dictionary encoding is applied to the string columns only
    rg = pq.read_metadata(out).row_group(0)
    encodings = {rg.column(i).path_in_schema: rg.column(i).encodings
                 for i in range(rg.num_columns)}
    assert any("DICT" in e for e in encodings["symbol"])
    assert not any("DICT" in e for e in encodings["price"])
    assert rg.column(0).statistics is None or not rg.column(0).statistics.has_min_max


@pytest.mark.parametrize("compression", ["lz4", "zstd", "snappy", "none"])
def test_compression_options(tmp_path: Path, compression: str) -> None:
    table = ticks(5_000)
    out = tmp_path / "c.parquet"
    write(out, table, compression=compression, statistics=True)
    codec = pq.read_metadata(out).row_group(0).column(3).compression
    assert codec == {"lz4": "LZ4", "zstd": "ZSTD", "snappy": "SNAPPY",
                     "none": "UNCOMPRESSED"}[compression]
    assert pq.read_metadata(out).row_group(0).column(3).statistics.has_min_max
    assert read(str(out)).equals(table)


def test_compression_level_reaches_the_codec(tmp_path: Path) -> None:
    table = ticks(50_000)
    sizes = {}
    for level in (1, 19):
        out = tmp_path / f"z{level}.parquet"
        write(out, table, compression="zstd", compression_level=level)
        assert read(str(out)).equals(table)
        sizes[level] = out.stat().st_size
    assert sizes[19] < sizes[1]
    with pytest.raises(ValidationError, match="expected 1-12 for lz4, found 13"):
        ParquetSinkConfig(kind="parquet", path="o.parquet", compression="lz4",
                          compression_level=13)
    with pytest.raises(ValidationError, match="compression 'none' takes no level"):
        ParquetSinkConfig(kind="parquet", path="o.parquet", compression="none",
                          compression_level=1)


def test_directory_and_glob(tmp_path: Path) -> None:
    parts = [ticks(3_000, seed=s) for s in (1, 2, 3)]
    for i, part in enumerate(parts):
        write(tmp_path / "data" / f"day{i}" / f"part{i}.parquet", part)
    (tmp_path / "data" / "_SUCCESS").write_text("")
    (tmp_path / "data" / "notes.txt").write_text("not parquet")
    whole = pa.concat_tables(parts)
    assert read(str(tmp_path / "data")).equals(whole)
    assert read(str(tmp_path / "data" / "day*" / "*.parquet")).equals(whole)
    assert read(str(tmp_path / "data" / "**" / "part[02].parquet")).equals(
        pa.concat_tables([parts[0], parts[2]]))


def test_projection(tmp_path: Path) -> None:
    table = ticks(20_000)
    out = tmp_path / "p.parquet"
    write(out, table)
    got = read(str(out), columns=["price", "symbol"])
    assert got.column_names == ["price", "symbol"]
    assert got.equals(table.select(["price", "symbol"]))
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(out),
                                            columns=["timestamp", "best_bid"]), CTX)
    assert src.schema().names == ["timestamp", "best_bid"]
    assert pa.Table.from_batches(list(src.batches())).equals(
        table.select(["timestamp", "best_bid"]))
    with pytest.raises(SourceError, match=r"no column\(s\) 'bid'.*its columns: timestamp"):
        src.batches(["bid"])


def test_batches_are_streamed_with_bounded_memory(tmp_path: Path) -> None:
    table = ticks(1_000_000)
    path = tmp_path / "big.parquet"
    write(path, table, row_group_rows=65_536)
    del table
    nbytes = pq.read_metadata(path).num_rows * 90  # about 90 bytes a row in memory
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(path)), CTX)
    it = src.batches(None, 10_000)
    assert inspect.isgenerator(it)
    baseline = pa.total_allocated_bytes()
    peak = rows = 0
    for batch in it:
        assert batch.num_rows <= 10_000
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - baseline)
        del batch
    assert rows == 1_000_000
    assert peak < min(nbytes / 10, 4 * 65_536 * 90)  # a row group or so, not the whole file


def test_files_are_opened_only_when_reached(tmp_path: Path) -> None:
    write(tmp_path / "d" / "0.parquet", ticks(30_000))
    write(tmp_path / "d" / "1.parquet", ticks(30_000, seed=2))
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(tmp_path / "d")), CTX)
    it = src.batches(None, 10_000)
    first = next(it)
    assert first.num_rows == 10_000
    # the second file breaks after the stream started: the error comes when it is reached
    (tmp_path / "d" / "1.parquet").write_bytes(b"this is not a parquet file" * 100)
    assert sum(b.num_rows for b in (next(it), next(it))) == 20_000
    with pytest.raises(SourceError, match=r"cannot read '.*1\.parquet'"):
        next(it)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    write(good, ticks(1_000))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 garbage")
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(bad)), CTX)
    with pytest.raises(SourceError, match=r"cannot read '.*bad\.parquet'"):
        src.schema()
    # a directory's files are all checked (footers only) before the first batch
    src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(tmp_path)), CTX)
    with pytest.raises(SourceError, match=r"bad\.parquet"):
        src.batches()
    other = tmp_path / "other"
    write(other / "a.parquet", ticks(1_000))
    pq.write_table(pa.table({"x": [1]}), other / "b.parquet")
    with pytest.raises(SourceError, match="different schema"):
        ParquetSource(ParquetSourceConfig(kind="parquet", path=str(other)), CTX).schema()


def test_missing_paths_name_the_path(tmp_path: Path) -> None:
    for path, message in [(tmp_path / "nope.parquet", "no such file or directory"),
                          (tmp_path / "x" / "*.parquet", "no file matches the glob"),
                          (tmp_path, "no \\*.parquet file in the directory")]:
        src = ParquetSource(ParquetSourceConfig(kind="parquet", path=str(path)), CTX)
        with pytest.raises(SourceError, match=message) as info:
            src.schema()
        assert str(path) in str(info.value)
        with pytest.raises(SourceError):
            src.batches()


def test_other_timestamp_units_are_cast_to_us_utc(tmp_path: Path) -> None:
    us = np.array([1_700_000_000_000_000, 1_700_000_000_000_001], dtype=np.int64)
    for unit, values, tz in [("ns", us * 1_000 + 7, "UTC"), ("ms", us // 1_000, None)]:
        path = tmp_path / f"{unit}.parquet"
        pq.write_table(pa.table({"timestamp": pa.array(values, pa.timestamp(unit, tz=tz)),
                                 "price": [1.0, 2.0]}), path, coerce_timestamps=None)
        back = read(str(path))
        assert back.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        expected = us if unit == "ns" else (us // 1_000) * 1_000
        assert back.column("timestamp").cast(pa.int64()).to_pylist() == expected.tolist()


def test_provenance_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "prov.parquet"
    write(out, ticks(1_000))
    prov = read_provenance(out)
    assert prov["job_yaml"] == JOB_YAML
    assert prov["job_sha256"] == hashlib.sha256(JOB_YAML.encode()).hexdigest()
    assert prov["version"] == "0.1.0" and prov["git_commit"] == "0123456789abcdef"
    assert prov["job_name"] == "demo" and prov["job_path"] == "jobs/demo.yaml"
    # the source hands out clean batches (no file metadata), the file keeps its schema
    assert read(str(out)).schema.metadata is None
    assert pq.read_schema(out).field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_unclosed_sink_leaves_no_final_file(tmp_path: Path) -> None:
    out = tmp_path / "partial.parquet"
    table = ticks(30_000)
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(out),
                                         row_group_rows=4_096), CTX)
    sink.open(table.schema)
    for batch in table.to_batches(max_chunksize=5_000):
        sink.write(batch)
    assert not out.exists()  # rows went to a hidden temp file only
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".partial.parquet")]
    assert len(hidden) == 1
    # a directory source does not pick up the temp file
    with pytest.raises(SourceError):
        ParquetSource(ParquetSourceConfig(kind="parquet", path=str(tmp_path)), CTX).schema()
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    # closing replaces an existing file only at the end
    out.write_bytes(b"old")
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(out)), CTX)
    sink.open(table.schema)
    sink.write(table.to_batches()[0])
    assert out.read_bytes() == b"old"
    sink.close()
    assert pq.read_metadata(out).num_rows == table.to_batches()[0].num_rows


def test_empty_output_and_config_checks(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(out)), CTX)
    sink.open(CANONICAL_TICK_SCHEMA)
    sink.close()
    assert pq.read_metadata(out).num_rows == 0
    assert pq.read_schema(out).equals(CANONICAL_TICK_SCHEMA, check_metadata=False)
    with pytest.raises(ValidationError):
        ParquetSinkConfig(kind="parquet", path=str(out), compression="lzma")
    with pytest.raises(ValidationError):
        ParquetSinkConfig(kind="parquet", path=str(out), bogus=True)
    with pytest.raises(ValidationError):
        ParquetSourceConfig(kind="parquet")
