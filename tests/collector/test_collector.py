"""The collector against a real loopback Coinbase server, with each failure of the live feed.

Every test ends with the same check: the ticks the collector wrote are exactly the ticks the
server really sent (a multiset of symbol, timestamp and price), so nothing was lost or doubled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.collector.conftest import PRODUCTS, collect, tick_keys_sent, tick_keys_written
from tickflow.connectors.coinbase_auth import KEY_ENV, SECRET_ENV, CoinbaseCredentials
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames
from tickflow.connectors.collector import Collector, CollectorSettings
from tickflow.connectors.dead_letter import DeadLetters, read_dead_letters
from tickflow.connectors.exchange_server import Faults
from tickflow.connectors.tick_writers import JsonlTickWriter
from tickflow.engine.errors import SourceError


def feed(count: int = 300) -> list:
    return synthetic_frames(PRODUCTS, count)


def test_clean_run_writes_every_tick_once(tmp_path):
    with CoinbaseExchangeServer(feed(), heartbeat_interval_s=0.1) as server:
        stats, out, dead = collect(server, tmp_path)
    assert stats.ticks == 300 == sum(tick_keys_written(out).values())
    assert tick_keys_written(out) == tick_keys_sent(server)
    assert (stats.gaps, stats.duplicates, stats.reconnects, dead.total) == (0, 0, 0, 0)
    assert stats.messages == stats.ticks + stats.heartbeats + 2  # + 2 confirmations
    subscribes = [m for m in server.received if m["type"] == "subscribe"]
    assert [m["channel"] for m in subscribes] == ["ticker", "heartbeats"]
    assert subscribes[0]["product_ids"] == list(PRODUCTS)


def test_disconnects_mid_stream_reconnect_resubscribe_and_lose_nothing(tmp_path):
    faults = Faults(disconnect_after=70, faulty_connections=2)
    with CoinbaseExchangeServer(feed(), faults=faults, heartbeat_interval_s=0.1) as server:
        stats, out, _ = collect(server, tmp_path)
    assert server.connection_count == 3 and stats.reconnects == 2
    channels = [m["channel"] for m in server.received if m["type"] == "subscribe"]
    assert channels == ["ticker", "heartbeats"] * 3
    written = tick_keys_written(out)
    assert written == tick_keys_sent(server)
    # each resubscribe brought a snapshot per product on top of the 300 market ticks
    assert sum(written.values()) == 300 + 2 * len(PRODUCTS)
    assert stats.gaps == 0 and stats.duplicates == 0  # sequence_num restarts per connection


def test_sequence_gaps_and_duplicates_are_counted(tmp_path):
    faults = Faults(skip_sequence=frozenset({10, 40, 41}), duplicate_sequence=frozenset({20, 50}))
    with CoinbaseExchangeServer(feed(), faults=faults, heartbeat_interval_s=10) as server:
        stats, out, _ = collect(server, tmp_path)
    assert (stats.gaps, stats.missing, stats.duplicates) == (2, 3, 2)
    written = tick_keys_written(out)
    assert written == tick_keys_sent(server)  # the duplicates were dropped, not written twice
    assert max(written.values()) == 1


def test_malformed_messages_go_to_dead_letters_with_reasons(tmp_path):
    kinds = {30: "malformed_json", 60: "unknown_channel", 90: "missing_field",
             120: "bad_number", 150: "string_numbers", 180: "error_frame"}
    with CoinbaseExchangeServer(feed(), faults=Faults(inject=kinds),
                                heartbeat_interval_s=10) as server:
        stats, out, _ = collect(server, tmp_path)
    assert server.injected == list(kinds.values())
    records = read_dead_letters(tmp_path / "dead.jsonl")
    assert sorted(r["reason"] for r in records) == sorted(
        ["malformed_json", "unknown_channel", "missing_field", "bad_number", "error_frame"])
    assert stats.dead_letters == 5 and stats.error_frames == 1
    by_reason = {r["reason"]: r for r in records}
    assert "ticker_v9" in by_reason["unknown_channel"]["payload"]
    assert "missing price" in by_reason["missing_field"]["detail"]
    assert json.loads(by_reason["bad_number"]["payload"])["ticker"]["price"] == "65,083.67" \
        or "65,083.67" in by_reason["bad_number"]["payload"]
    assert by_reason["malformed_json"]["payload"].endswith('"sequence_num":')
    # malformed JSON and error frames use no sequence number: no spurious gap
    assert stats.gaps == 0
    # the all-strings ticker (sequence_num "151" included) is a good tick
    assert tick_keys_written(out) == tick_keys_sent(server)
    assert stats.ticks == 301


def test_numbers_sent_as_json_numbers_are_accepted(tmp_path):
    with CoinbaseExchangeServer(feed(100), faults=Faults(numbers_as_json=True),
                                heartbeat_interval_s=10) as server:
        stats, out, dead = collect(server, tmp_path)
    assert stats.ticks == 100 and dead.total == 0
    assert tick_keys_written(out) == tick_keys_sent(server)


class SlowJsonlWriter(JsonlTickWriter):
    """A real JSON Lines writer on a slow disk: every write takes ``delay_s`` more."""

    def __init__(self, path, delay_s: float):
        super().__init__(path)
        self.delay_s = delay_s
        self.written_when_feed_ended: int | None = None

    def write(self, ticks):
        time.sleep(self.delay_s)
        super().write(ticks)


def test_slow_consumer_loses_nothing(tmp_path):
    frames = feed(600)
    with CoinbaseExchangeServer(frames, heartbeat_interval_s=0.2, write_limit=1024) as server:
        writer = SlowJsonlWriter(tmp_path / "ticks.jsonl", delay_s=0.003)
        started = time.monotonic()
        stats, out, _ = collect(server, tmp_path, writer=writer, heartbeat_timeout_s=10.0)
        elapsed = time.monotonic() - started
    assert stats.ticks == 600
    assert tick_keys_written(out) == tick_keys_sent(server)
    assert elapsed >= 600 * 0.003  # the writer really was the bottleneck
    assert stats.reconnects == 0 and stats.heartbeat_timeouts == 0


def test_silent_feed_trips_the_heartbeat_watchdog(tmp_path):
    with CoinbaseExchangeServer(feed(), faults=Faults(silence_after=100),
                                heartbeat_interval_s=0.1) as server:
        stats, out, _ = collect(server, tmp_path, heartbeat_timeout_s=1.5)
    assert stats.heartbeat_timeouts == 1 and stats.reconnects == 1
    assert tick_keys_written(out) == tick_keys_sent(server)
    assert sum(tick_keys_written(out).values()) == 300 + len(PRODUCTS)


def test_missing_heartbeats_alone_cause_a_reconnect(tmp_path):
    faults = Faults(heartbeats_stop_after=2, send_delay_s=0.004)
    with CoinbaseExchangeServer(feed(), faults=faults, heartbeat_interval_s=0.1) as server:
        stats, out, _ = collect(server, tmp_path, heartbeat_timeout_s=0.6)
    assert stats.heartbeat_timeouts >= 1 and stats.reconnects >= 1
    # The collector drops a connection it believes dead, so a frame the server wrote just before
    # can be lost on the wire; the resubscribe snapshot sends each product's last ticker again.
    # Every distinct tick must therefore arrive, though a snapshot copy may not.
    assert set(tick_keys_written(out)) == set(tick_keys_sent(server))


def test_unreachable_server_backs_off_then_gives_up(tmp_path):
    with CoinbaseExchangeServer(feed(10)) as server:
        url = server.url  # a port nobody listens on once the server has stopped
    writer = JsonlTickWriter(tmp_path / "t.jsonl")
    collector = Collector(CollectorSettings(url=url, products=PRODUCTS, max_failures=4,
                                            backoff_base_s=0.05, backoff_cap_s=0.1,
                                            open_timeout_s=2), writer, DeadLetters())
    with pytest.raises(SourceError, match="4 consecutive connection attempts"):
        asyncio.run(collector.run())
    writer.close()
    assert collector.stats.failed_connects == 4 and collector.stats.connections == 0


def test_stop_while_the_handshake_hangs_ends_promptly(tmp_path):
    import socket

    with socket.socket() as silent:  # accepts TCP, never answers the WebSocket handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        writer = JsonlTickWriter(tmp_path / "t.jsonl")
        collector = Collector(CollectorSettings(url=url, open_timeout_s=60, duration_s=0.3),
                              writer, DeadLetters())
        started = time.monotonic()
        stats = asyncio.run(collector.run())
        writer.close()
    assert time.monotonic() - started < 10
    assert stats.connections == 0 and stats.ticks == 0


def ec_key_pem() -> tuple[str, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


def test_api_secret_signs_a_fresh_jwt_per_subscribe_and_never_reaches_the_log(
        tmp_path, monkeypatch, caplog):
    pem, public = ec_key_pem()
    key_name = "organizations/org-1/apiKeys/key-1"
    monkeypatch.setenv(KEY_ENV, key_name)
    monkeypatch.setenv(SECRET_ENV, pem)
    credentials = CoinbaseCredentials.from_env()
    assert pem not in repr(credentials)
    caplog.set_level(logging.DEBUG)
    faults = Faults(disconnect_after=50)
    with CoinbaseExchangeServer(feed(100), require_jwt=True, faults=faults,
                                heartbeat_interval_s=0.1) as server:
        stats, _, _ = collect(server, tmp_path, credentials=credentials)
    assert stats.reconnects == 1 and stats.ticks == 100 + len(PRODUCTS)
    tokens = [m["jwt"] for m in server.received if m["type"] == "subscribe"]
    assert len(tokens) == 4 and len(set(tokens)) == 4  # one per subscribe, resubscribes too
    for token in tokens:
        claims = pyjwt.decode(token, public, algorithms=["ES256"], issuer="cdp")
        assert claims["sub"] == key_name and claims["exp"] - claims["nbf"] == 120
        assert "uri" not in claims
        assert pyjwt.get_unverified_header(token)["kid"] == key_name
    logged = caplog.text
    assert "authenticated" in logged  # the log does say that it authenticates
    secret_body = "".join(pem.strip().splitlines()[1:-1])
    for line in pem.strip().splitlines()[1:-1]:
        assert line not in logged
    assert secret_body not in logged
    assert all(token not in logged for token in tokens)


def test_half_configured_credentials_are_an_error(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "organizations/o/apiKeys/k")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(SourceError, match=f"{SECRET_ENV} is not set"):
        CoinbaseCredentials.from_env()
    monkeypatch.setenv(SECRET_ENV, "not a key")
    with pytest.raises(SourceError, match="neither a PEM") as info:
        CoinbaseCredentials.from_env().jwt()
    assert "not a key" not in str(info.value)
