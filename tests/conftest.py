"""Shared test fixtures.

``shared_path`` finds the team's read-only ``../shared`` folder (recorded market data, the kernel
specification). A user's fresh clone has none: tests that need it skip with a reason, except
under CI (``CI=true``), where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is not here (it sits beside the repository on the team's machines)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def kafka_broker():
    """A real embedded Kafka-protocol broker (Tansu, memory storage) shared by the session.

    Tests create their own uniquely named topics; a test that kills or restarts a broker
    starts its own instead of using this one.
    """
    from tickflow.connectors.embedded_broker import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()

