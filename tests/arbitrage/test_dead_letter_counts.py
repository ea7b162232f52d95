"""Dead-letter counts above 1 through the Binance and Kraken collectors: repeated and mixed
reasons; totals, per-reason counts and the records written must all agree."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.arbitrage.conftest import collect_venue
from tests.arbitrage.test_venue_collectors import quotes, venue
from tickflow.connectors.exchange_server import Faults

INJECT = {8: "malformed_json", 16: "malformed_json", 24: "missing_field",
          32: "malformed_json", 40: "bad_number", 48: "missing_field", 56: "unknown_channel"}
EXPECTED = Counter(INJECT.values())  # malformed_json 3, missing_field 2, bad_number 1, ...


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_repeated_and_mixed_reasons_are_each_counted(exchange, tmp_path):
    server, options = venue(exchange, faults=Faults(inject=INJECT))
    with server:
        stats, ticks, dead = collect_venue(server, exchange, tmp_path, **options)
        sent = len(server.sent_log)
    assert dict(dead.counts) == dict(EXPECTED)
    assert dead.total == len(INJECT) == stats.dead_letters
    records = [json.loads(line) for line in dead.path.read_text().splitlines()]
    assert Counter(r["reason"] for r in records) == EXPECTED
    assert all(r["payload"] and r["source"] == exchange for r in records)
    assert len(quotes(ticks)) == sent


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_one_reason_many_times(exchange, tmp_path):
    inject = dict.fromkeys(range(5, 50, 5), "malformed_json")
    server, options = venue(exchange, faults=Faults(inject=inject))
    with server:
        stats, _, dead = collect_venue(server, exchange, tmp_path, **options)
    assert dict(dead.counts) == {"malformed_json": 9}
    assert dead.total == 9 == stats.dead_letters
    assert len(dead.path.read_text().splitlines()) == 9
