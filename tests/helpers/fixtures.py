"""Fixtures for this area (see tests/conftest.py), and the suite-wide secrecy check."""

from __future__ import annotations

import logging
import queue
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import secrecy
from tests.helpers.residents import Make, Posted, residents
from tests.helpers.vault_rotation import Running, reap

secrecy.install()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    secrecy.current_test = item.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any seeded secret reached any collected output (see secrecy.py)."""
    began = time.perf_counter()
    found = secrecy.leaks()
    took = time.perf_counter() - began
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity >= 0:
        reporter.write_line(f"secrecy: {secrecy.summary()}, checked in {took:.2f}s")
    if not found:
        return
    lines = [f"  {value} in {where}" for value, where in found[:50]]
    report = "\n".join(["SECRECY: seeded secret values appeared in output:", *lines])
    if reporter is not None:
        reporter.write_line(report, red=True, bold=True)
    else:
        print(report)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def entrypoint_logger() -> Iterator[None]:
    """The ``entrypoint`` logger as it was before the test. A test that runs the CLI
    in-process calls ``logs.setup()``, which clears the logger's handlers (secrecy's
    collector with them: later tests' logs went unchecked) and adds one on that test's
    captured stderr; pytest closes that stream, and a thread of a later test logging
    there printed "--- Logging error --- I/O operation on closed file"."""
    logger = logging.getLogger("entrypoint")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def procs() -> Iterator[list[Running]]:
    """Entrypoints a test started (``vault_rotation.start``), killed at its end."""
    running: list[Running] = []
    yield running
    reap(running)


@pytest.fixture
def database(vault_server: Any, postgres: Any) -> Any:
    """The Vault test server with its database engine on the real PostgreSQL."""
    vault_server.configure_database(postgres)
    return vault_server


@pytest.fixture
def popens() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Entrypoints a test started with ``start_cli``, stopped at its end: SIGTERM first,
    so that a failed test's entrypoint stops its app, then SIGKILL."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def posted() -> Posted:
    """What in-process residents post to their supervisor (``resident_for``)."""
    return queue.SimpleQueue()


@pytest.fixture
def resident_for(posted: Posted) -> Iterator[Make]:
    """Makes in-process residents (tests/helpers/residents.py), shut down at the end."""
    with residents(posted, logging.getLogger("entrypoint")) as make:
        yield make
