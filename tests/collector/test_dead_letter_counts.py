"""Dead-letter counts above 1: several bad frames of one reason and of mixed reasons through the
Coinbase collector. Totals, per-reason counts and the records written must all agree."""

from __future__ import annotations

from collections import Counter

from tests.collector.conftest import PRODUCTS, collect, tick_keys_sent, tick_keys_written
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.connectors.dead_letter import read_dead_letters
from tickflow.connectors.exchange_server import Faults

# frame index -> injected kind: 3 + 2 + 1 + 2 bad frames
INJECT = {20: "malformed_json", 40: "malformed_json", 60: "malformed_json",
          80: "missing_field", 100: "missing_field", 120: "bad_number",
          140: "error_frame", 160: "error_frame"}
EXPECTED = Counter(INJECT.values())


def test_repeated_and_mixed_reasons_are_each_counted(tmp_path):
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 200), faults=Faults(inject=INJECT),
                                heartbeat_interval_s=10) as server:
        stats, out, dead = collect(server, tmp_path)
    assert server.injected == list(INJECT.values())
    assert dict(dead.counts) == dict(EXPECTED)
    assert dead.total == 8 == stats.dead_letters
    assert stats.error_frames == 2
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert Counter(r["reason"] for r in records) == EXPECTED
    assert all(r["payload"] and r["source"] == "coinbase" for r in records)
    assert dead.summary().startswith(
        "dead letters: 8 [bad_number=1, error_frame=2, malformed_json=3, missing_field=2]")
    assert tick_keys_written(out) == tick_keys_sent(server)  # the good frames all got through
