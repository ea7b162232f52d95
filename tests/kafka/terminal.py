"""Run a command with its output piped or on a pseudo-terminal, and time it (the live view
tests and ``bench/view.py``)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import threading
import time


def run_job(args: list[str], env: dict[str, str], terminal: bool) -> tuple[float, str]:
    """Run ``args`` with stdout piped or on a 200x50 pseudo-terminal (read as fast as a
    terminal reads); wall time and output. A non-zero exit fails with the output's tail."""
    if not terminal:
        start = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240,
                              check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return time.perf_counter() - start, done.stdout
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:  # a terminal reads all it is sent
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.perf_counter()
    proc = subprocess.Popen(args, env={**env, "TERM": "xterm-256color"}, stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    code = proc.wait(240)
    elapsed = time.perf_counter() - start
    reader.join(10)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert code == 0, text[-2000:]
    return elapsed, text
