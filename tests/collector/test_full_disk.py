"""The collector on a full disk, made real with a file size limit (``RLIMIT_FSIZE``): writes
past it fail with EFBIG exactly as they fail with ENOSPC on a full disk. One clear error
line, a non-zero exit, the JSON Lines written so far intact, and no stray partial file."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.collector.conftest import PRODUCTS, tick_keys_sent, tick_keys_written
from tests.conftest import ROOT
from tickflow.connectors.coinbase_server import CoinbaseExchangeServer, synthetic_frames

LIMIT_BYTES = 40_000


def _limit_file_size() -> None:
    # as on a full disk: the write fails (EFBIG) instead of the process being killed (SIGXFSZ)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def _collect(url: str, *output: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickflow.connectors.collector_cli", "coinbase", "--url", url,
         "--products", *PRODUCTS, "--max-ticks", "2000", "--duration", "60",
         "--log-level", "ERROR", *output],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, preexec_fn=_limit_file_size)


def test_full_disk_with_jsonl_is_one_line_and_keeps_every_complete_tick(tmp_path):
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 2000),
                                heartbeat_interval_s=0.2) as server:
        result = _collect(server.url, "--jsonl", "ticks.jsonl", cwd=tmp_path)
        sent = tick_keys_sent(server)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "ticks.jsonl" in result.stderr and "File too large" in result.stderr
    out = tmp_path / "ticks.jsonl"
    assert 0 < out.stat().st_size <= LIMIT_BYTES
    assert out.read_text().endswith("\n")  # no half-written last line
    written = tick_keys_written(out)  # every line parses
    assert sum(written.values()) > 50 and not written - sent
    stopped = int(result.stderr.split("stopped after ")[1].split()[0].replace(",", ""))
    assert stopped == sum(written.values())


def test_full_disk_with_parquet_is_one_line_and_leaves_no_partial_file(tmp_path):
    with CoinbaseExchangeServer(synthetic_frames(PRODUCTS, 2000),
                                heartbeat_interval_s=0.2) as server:
        result = _collect(server.url, "-F", "-o", "ticks.parquet", "--flush-rows", "100",
                          cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "ticks.parquet" in result.stderr and "File too large" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "parquet" in p.name) == []


def test_the_limit_is_real(tmp_path):
    """The failures above come from the kernel, not from the test."""
    code = (f"import os; fd = os.open({str(tmp_path / 'x')!r}, os.O_WRONLY | os.O_CREAT); "
            f"os.write(fd, b'x' * {LIMIT_BYTES}); os.write(fd, b'x')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            preexec_fn=_limit_file_size, timeout=60)
    assert result.returncode != 0 and "[Errno 27] File too large" in result.stderr
