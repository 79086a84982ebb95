"""Pytest plugin: `vault_server`, a real Vault per test (tests/realservers/vault.py).

The Vault stand-in of tests/vaultserver stays reachable as `vault_standin` for the few
tests whose case neither the real server nor the fault proxy can produce; each says why.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realservers import binaries
from tests.realservers.vault import RealVault

_reported: set[str] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.stash[_FAILED] = True


_FAILED = pytest.StashKey[bool]()


def _log_version(name: str) -> None:
    if name not in _reported:
        _reported.add(name)
        sys.stderr.write(f"\nreal {name}: {binaries.find(name)} ({binaries.version(name)})\n")


@pytest.fixture
def vault_server(request: pytest.FixtureRequest) -> Iterator[RealVault]:
    """A fresh real Vault (`vault server -dev`) on a free loopback port, random root token;
    KV v2 at secret/, KV v1 at kv/, audit log as `.requests`. `.proxy()` adds a fault proxy.
    On failure the server's log is printed with the test's report."""
    _log_version("vault")
    with RealVault() as server:
        try:
            yield server
        finally:
            if request.node.stash.get(_FAILED, False):
                # The dev server prints its root token and unseal key: not in a report.
                lines = [line for line in server.log_text().splitlines()[-150:]
                         if not line.startswith(("Root Token:", "Unseal Key:"))]
                sys.stderr.write(f"--- vault server log ({server.addr}) ---\n"
                                 + "\n".join(lines) + "\n")


@pytest.fixture
def vault_proxy(vault_server: RealVault) -> Any:
    """The real Vault behind a fault proxy: `.addr` is the proxy's, faults as the stand-in's."""
    return vault_server.proxy()
