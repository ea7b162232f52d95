"""A replay asked to linger longer makes record batches as long as the linger: the embedded
broker's every fetch lists every stored batch of a partition, so a soak at 50K ticks/s keeps
their count down with a long linger, which librdkafka's size caps (10,000 messages, 1 MB,
about 3,900 ticks) would otherwise cut into some 13 batches a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import confluent_kafka
import pytest

from tickflow.connectors import replay
from tickflow.connectors.simulator import write_simulated_parquet


class _Recorder:
    """Stands in for confluent_kafka.Producer: keeps its settings and the values produced."""

    made: ClassVar[list[_Recorder]] = []

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.values: list[bytes] = []
        _Recorder.made.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None = None,
                headers: Any = None) -> None:
        self.values.append(value)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        return 0


def _replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              linger_ms: int | None) -> _Recorder:
    capture = tmp_path / "capture.parquet"
    write_simulated_parquet(capture, rows=2_000, compression="none")
    monkeypatch.setattr(confluent_kafka, "Producer", _Recorder)
    monkeypatch.setattr(replay, "ensure_topic", lambda *a, **k: 1)
    _Recorder.made.clear()
    extra = None if linger_ms is None else {"linger.ms": linger_ms}
    assert replay.replay_to_kafka(capture, "127.0.0.1:1", "ticks", "max",
                                  producer_settings=extra) == 2_000
    (producer,) = _Recorder.made
    return producer


def test_a_long_linger_is_not_cut_short_by_the_batch_size_caps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = confluent_kafka.Producer
    producer = _replayed(tmp_path, monkeypatch, linger_ms=1_000)
    s = producer.settings
    assert s["linger.ms"] == 1_000
    second = 50_000  # ticks in one linger at the 50K ticks/s
    assert s["batch.num.messages"] >= second
    assert s["batch.size"] >= second * max(map(len, producer.values)) * 1.5
    assert s["message.max.bytes"] >= s["batch.size"]
    real({k: v for k, v in s.items() if k != "logger"})  # librdkafka accepts them


def test_the_default_linger_keeps_its_batches(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s = _replayed(tmp_path, monkeypatch, linger_ms=None).settings
    assert s["linger.ms"] == replay.DEFAULT_LINGER_MS
    assert s["batch.num.messages"] == 10_000
    assert "batch.size" not in s


def test_an_arrow_topics_replay_batches_the_same_way(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``--replay`` into a source whose topic is not JSON encodes in the job's process
    (engine/executors/live_replay.py): its producer lingers the same way."""
    from types import SimpleNamespace

    from tickflow.connectors import kafka_client
    from tickflow.engine.executors.live_replay import replay_into

    capture = tmp_path / "capture.parquet"
    write_simulated_parquet(capture, rows=2_000, compression="none")
    monkeypatch.setattr(confluent_kafka, "Producer", _Recorder)
    monkeypatch.setattr(kafka_client, "ensure_topic", lambda *a, **k: 1)
    source = SimpleNamespace(bootstrap="127.0.0.1:1",
                             config=SimpleNamespace(format="arrow", topic="ticks", security=None))
    for linger_ms, batched in ((1_000, True), (5, False)):
        _Recorder.made.clear()
        assert replay_into(source, capture, "max", partitions=1, linger_ms=linger_ms) > 0
        (producer,) = _Recorder.made
        s = producer.settings
        assert s["linger.ms"] == linger_ms
        assert s["message.timeout.ms"] == 0
        assert ("batch.size" in s) is batched
        assert s["batch.num.messages"] == (1_000_000 if batched else 10_000)
