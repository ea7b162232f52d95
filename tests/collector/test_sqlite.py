"""The seed's SQLite output: ``-S FILE`` writes every received tick to a real SQLite file,
``-SK FILE -k BOOTSTRAP`` replays it into Kafka (the embedded broker here)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from tests.kafka.util import read_topic, unique
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.connectors.sqlite_ticks import read_sqlite_ticks
from tickflow.connectors.tick_codec import decode_tick_values
from tickflow.engine import cli

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("sqlite") / "ticks.db"
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 900), heartbeat_interval_s=0.2,
                                speed=0) as server:
        code = cli.main(["collect", "coinbase", "--url", server.url, "--products", *PRODUCTS,
                         "-S", str(path), "--max-ticks", "900", "--log-level", "WARNING"])
        sent = list(server.sent_ticks)
    assert code == 0
    return path, sent


def test_collector_writes_every_tick_to_sqlite(collected) -> None:
    path, sent = collected
    db = sqlite3.connect(path)
    try:
        (count,) = db.execute("SELECT count(*) FROM ticks").fetchone()
        columns = [row[1] for row in db.execute("PRAGMA table_info(ticks)")]
        symbols = {s for (s,) in db.execute("SELECT DISTINCT symbol FROM ticks")}
    finally:
        db.close()
    assert 900 <= count <= len(sent)
    assert columns[:3] == ["timestamp", "symbol", "exchange"] and "best_bid" in columns
    assert symbols == set(PRODUCTS)
    table = pa.concat_tables(read_sqlite_ticks(path, chunk_rows=250))
    assert table.num_rows == count
    # in the order sent, with the prices sent (the server sends them as text)
    got = [(r["symbol"], r["price"]) for r in table.slice(0, 50).to_pylist()]
    assert got == [(t["symbol"], float(t["price"])) for t in sent[:50]]
    assert table["timestamp"].null_count == 0


def test_sk_replays_the_sqlite_file_into_kafka(collected, kafka_broker, capsys) -> None:
    path, _ = collected
    table = pa.concat_tables(read_sqlite_ticks(path))
    topic = unique("from-sqlite")
    code = cli.main(["collect", "coinbase", "-SK", str(path), "-k", kafka_broker.bootstrap,
                     "--topic", topic, "--speed", "max"])
    assert code == 0
    assert f"replayed {table.num_rows:,} ticks from {path}" in capsys.readouterr().out
    messages = read_topic(kafka_broker.bootstrap, topic, table.num_rows)
    ticks, rejected = decode_tick_values([m.value() for m in messages])
    assert rejected == [] and ticks.num_rows == table.num_rows
    assert pa.Table.from_batches([ticks]).equals(table)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path, kafka_broker, capsys) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("not a database")
    code = cli.main(["collect", "coinbase", "-SK", str(bad), "-k", kafka_broker.bootstrap,
                     "--topic", unique("bad")])
    err = capsys.readouterr().err
    assert code != 0 and f"sqlite: {bad} has no readable ticks table" in err
    assert "Traceback" not in err
    code = cli.main(["collect", "coinbase", "-S", str(tmp_path / "a.db"), "--jsonl",
                     str(tmp_path / "a.jsonl")])
    assert code != 0 and "choose exactly one output" in capsys.readouterr().err
