"""Simulated ticks shared by the API tests (small: the kernels' compile time dominates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def sim_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tickflow.connectors.simulator import write_simulated_parquet

    path = tmp_path_factory.mktemp("api") / "ticks.parquet"
    write_simulated_parquet(path, rows=6_000, symbols=3, seed=3)
    return path


@pytest.fixture()
def research_job() -> Path:
    return ROOT / "jobs" / "research.yaml"
