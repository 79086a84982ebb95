"""Pytest plugin: the `vault_standin` fixture (registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vaultserver.server import VaultTestServer


@pytest.fixture
def vault_standin() -> Iterator[VaultTestServer]:
    """A fresh Vault stand-in per test on a free loopback port (see VaultTestServer).

    Like `vault server -dev`: root token `.root_token`, KV v2 at secret/, plus KV v1 at kv/.
    On teardown every lease left is revoked, so database roles do not outlive the test.
    """
    with VaultTestServer() as server:
        yield server
