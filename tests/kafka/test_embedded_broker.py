"""The embedded broker never outlives the process that started it, even one killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tickflow.connectors.embedded_broker import broker_answers

ROOT = Path(__file__).resolve().parents[2]
OWNER = """
import time
from tickflow.connectors.embedded_broker import EmbeddedBroker
broker = EmbeddedBroker().start()
print(broker.bootstrap, flush=True)
time.sleep(120)
"""


def test_a_sigkilled_owner_leaves_no_broker_behind() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        bootstrap = owner.stdout.readline().strip()
        assert bootstrap.startswith("127.0.0.1:"), bootstrap
        assert broker_answers(bootstrap, timeout_s=5.0)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        owner.stdout.close()
    deadline = time.monotonic() + 10
    while broker_answers(bootstrap, timeout_s=0.5):
        assert time.monotonic() < deadline, f"the broker on {bootstrap} outlived its owner"
        time.sleep(0.1)
