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


# Modules whose preconditions depend on speed: a SIGKILL must land mid-run, checkpoints or
# commits must come while ticks still arrive, or a timed comparison is made (terminal vs
# piped). `make test` runs the suite in one process. Run by hand on pytest-xdist workers
# (`-n 2 --dist loadgroup`) they form one group: one worker runs them one after another, never
# two of them side by side on a 2-core machine, and they are collected first, so that this
# longest group starts at once instead of trailing at the end of the run.
TIMING_SENSITIVE = frozenset({
    "tests/kafka/test_failures.py",
    "tests/kafka/test_live_checkpoints.py",
    "tests/kafka/test_live_checkpoints_many.py",
    "tests/kafka/test_live_driver.py",
    "tests/kafka/test_live_view.py",
    "tests/runtime/test_graph_crash_recovery.py",
    "tests/runtime/test_live_graphs.py",
    "tests/state/test_crash_recovery.py",
    "tests/state/test_live_crash_recovery.py",
    "tests/state/test_live_crash_recovery_many.py",
    "tests/state/test_live_members.py",
    "tests/state/test_paging_and_simulator.py",
})


def _is_timing_sensitive(item: pytest.Item) -> bool:
    return item.path.relative_to(ROOT).as_posix() in TIMING_SENSITIVE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "numprocesses", None):
        return  # one process: the usual order
    for item in items:
        if _is_timing_sensitive(item):
            item.add_marker(pytest.mark.xdist_group("timing"))
    items.sort(key=lambda item: not _is_timing_sensitive(item))  # stable: modules stay whole
