"""Allocator settings made when tickflow is imported (docs/performance.md: the 100K peak)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

_SHOW = ("import tickflow, pyarrow as pa; pa.default_memory_pool().bytes_allocated(); "
         "print(pa.default_memory_pool().backend_name)")


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")} | env
    return subprocess.run([sys.executable, "-c", _SHOW], env=env, capture_output=True,
                          text=True, check=True, timeout=120)


@pytest.mark.skipif(pa.default_memory_pool().backend_name != "mimalloc",
                    reason="Arrow's pool here is not mimalloc")
def test_arrow_pool_gets_no_huge_pages_unless_the_environment_says_otherwise() -> None:
    done = _run({"MIMALLOC_VERBOSE": "1"})
    assert done.stdout.strip() == "mimalloc"
    assert "option 'allow_thp': 0" in done.stderr  # mimalloc read it when pyarrow loaded
    kept = _run({"MIMALLOC_VERBOSE": "1", "MIMALLOC_ALLOW_THP": "1"})
    assert "option 'allow_thp': 1" in kept.stderr  # a user's own setting wins
