"""Pytest plugin: the `consul_server` fixture (register as "tests.consulserver.fixtures")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consulserver.server import ConsulServer


@pytest.fixture
def consul_server() -> Iterator[ConsulServer]:
    """A fresh Consul KV stand-in per test (cheap: a thread), so faults and data stay put.

    `.addr` is http://127.0.0.1:PORT; `.put(key, value)` writes as another client would;
    fail_next/set_delay/stop/start/restart/require_token/requests control and observe it.
    """
    with ConsulServer() as server:
        yield server
