"""The drain's pre-filled topic in another message format: Avro or Arrow IPC (issue #20).

``bench/live.py --formats json,arrow,avro`` drains one topic per format through the same
live job, the source reading it with that ``format:``. The messages are written by the
encoders a tickflow Kafka sink uses (``connectors/formats.py``): Arrow packs the rows of one
symbol of each encoded batch into one message (``--arrow-rows`` rows a batch, as a sink writes
a batch it was handed), Avro writes one tick a message in the Confluent wire format against
the tests' loopback Schema Registry. JSON stays the drain's own ``tick_codec`` messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyarrow as pa

FORMATS = ("json", "arrow", "avro")


def simulated(rows: int, symbols: int = 14) -> pa.Table:
    """The drain's ticks (the same simulator and seed as ``live_producer.ticks_values``)."""
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource

    src = SimulatorSource(SimulatorConfig(kind="simulator", rows=rows, symbols=symbols,
                                          seed=3), RunContext(job_name="bench"))
    return pa.Table.from_batches(list(src.batches(None, 65_536)))


def encoded(fmt: str, topic: str, rows: int, batch_rows: int,
            registry: str | None) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """``(key, value)`` messages of ``rows`` simulated ticks in ``fmt``, and the ticks each
    message holds (1 for JSON and Avro, many for Arrow)."""
    from tickflow.connectors.formats import row_encoder

    ticks = simulated(rows)
    encode = row_encoder(fmt, topic, ticks.schema, "symbol", None,  # type: ignore[arg-type]
                         registry if fmt == "avro" else None)
    pairs: list[tuple[bytes, bytes]] = []
    counts: list[int] = []
    for batch in ticks.to_batches(max_chunksize=batch_rows):
        out = encode(batch)
        pairs += out
        if fmt == "arrow":
            counts += [pa.ipc.open_stream(v).read_all().num_rows for _, v in out]
        else:
            counts += [1] * len(out)
    return pairs, counts


def fill_messages(pairs: list[tuple[bytes, bytes]], counts: list[int],
                  ticks: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """Messages holding at least ``ticks`` ticks (cycling through ``pairs`` as the JSON drain
    does) and the ticks they hold."""
    out: list[tuple[bytes, bytes]] = []
    total = i = 0
    while total < ticks:
        out.append(pairs[i % len(pairs)])
        total += counts[i % len(counts)]
        i += 1
    return out, total


@contextlib.contextmanager
def registry_for(formats: list[str]) -> Iterator[str | None]:
    """The tests' loopback Schema Registry while Avro is measured (no real one here)."""
    if "avro" not in formats:
        yield None
        return
    from tests.kafka.schema_registry_server import SchemaRegistryServer

    with SchemaRegistryServer() as server:
        yield server.url


def source_lines(fmt: str, registry: str | None) -> str:
    """The job source's format settings (none for JSON: the job stays as it was)."""
    if fmt == "json":
        return ""
    lines = f"    format: {fmt}\n"
    if fmt == "avro":
        lines += f'    schema_registry: "{registry}"\n'
    return lines


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise SystemExit(f"--formats: {', '.join(unknown) or 'none given'}; "
                         f"choose from {', '.join(FORMATS)}")
    return formats
