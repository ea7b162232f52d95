"""``run-job --replay``: a capture produced into the live source's topic in the source's format.

A JSON topic gets the capture as it is (``replay_to_kafka``). An Avro or Arrow topic gets the
same ticks encoded the way the job's source decodes them (``connectors/formats.py``): Avro one
tick a message against the source's Schema Registry (the repo's tick schema, as the collector
writes it), Arrow many ticks a message. Pacing (``--speed``) follows the ticks' timestamps, a
slice of at most ``SLICE_ROWS`` ticks at a time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

SLICE_ROWS = 1_000


def _encoder(source: Any) -> Any:
    """``(json pairs) -> (key, value) pairs`` in the source's format (bad lines: dropped)."""
    from tickflow.connectors.tick_codec import decode_tick_values

    cfg = source.config
    if cfg.format == "avro":
        from tickflow.connectors.avro_codec import AvroTickEncoder

        encode = AvroTickEncoder(cfg.schema_registry, cfg.topic).encode_rows
    else:
        from tickflow.connectors.arrow_codec import encode_arrow_messages as encode

    def encode_pairs(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        ticks, _ = decode_tick_values([v for _, v in pairs])
        return encode(ticks, "symbol") if ticks.num_rows else []

    return encode_pairs


def replay_into(source: Any, path: str | Path, speed: str | float | None, *,
                partitions: int, stop: threading.Event | None = None,
                linger_ms: int = 5) -> int:
    """Produce the capture at ``path`` into ``source``'s topic; returns the messages produced.

    ``linger_ms`` is the producer's batching wait: each record batch costs the embedded broker
    on every later fetch, so long paced replays into it want larger batches."""
    from tickflow.connectors.replay import replay_to_kafka

    cfg = source.config
    if cfg.format == "json":
        return replay_to_kafka(path, source.bootstrap, cfg.topic, speed,
                               partitions=partitions, stop=stop,
                               producer_settings={"linger.ms": linger_ms})
    from confluent_kafka import Producer

    from tickflow.connectors.kafka_client import client_settings, ensure_topic
    from tickflow.connectors.replay import (
        Pacer,
        capture_chunks,
        produce_retrying,
        replay_producer_settings,
    )

    pacer = Pacer(speed)
    settings = client_settings(source.bootstrap, cfg.security,
                               **replay_producer_settings(linger_ms))
    ensure_topic(settings, cfg.topic, partitions)
    producer = Producer(settings)
    encode = _encoder(source)
    sent = 0
    for pairs, ts in capture_chunks(path):
        for lo in range(0, len(pairs), SLICE_ROWS):
            if stop is not None and stop.is_set():
                producer.flush()
                return sent
            pacer.wait(int(ts[lo]), producer)
            for key, value in encode(pairs[lo:lo + SLICE_ROWS]):
                produce_retrying(producer, cfg.topic, value, key)
                sent += 1
            producer.poll(0)
    producer.flush()
    return sent
