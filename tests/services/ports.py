"""Free loopback ports and waiting on conditions, shared by the service stand-ins."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now.

    Another process may take it before we bind it again; callers that start a server on it
    retry with a new port when the bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout: float = 10.0,
               what: str = "condition", interval: float = 0.02) -> object:
    """Poll ``predicate`` until it returns something truthy (returned), or raise
    TimeoutError naming ``what`` at the deadline. Every test waits through this one."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)

class Service:
    """A stand-in started and stopped as a context manager: ``with Server() as s: ...``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> None:
    """Ask a server process to stop with ``sig``; kill it if it has not after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
