"""Pytest plugin: a real Consul agent per test (tests/realservers/consul_agent.py).

- `consul_agent`: `consul agent -dev` without ACLs;
- `consul_acl_agent`: the same with ACLs on, default_policy "deny", a random management
  token (`.management_token`) and `.create_token(rules)`;
- `consul_tls_agent`: the same serving HTTPS too, with client certificates required;
- `consul_proxy`: `consul_agent` behind a fault proxy (`.addr` is the proxy's).

On a failed test the tail of the agent's log is printed with the report.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.realservers.consul_agent import ConsulAgent, consul_binary, consul_version
from tests.realservers.consul_proxy import ConsulFaultProxy

_FAILED = pytest.StashKey[bool]()
_versions_logged: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: Any) -> Generator[None, Any, None]:
    outcome = yield
    if outcome.get_result().failed:
        item.stash[_FAILED] = True


def _agent(request: pytest.FixtureRequest, acl: bool = False,
           tls: bool = False) -> Iterator[ConsulAgent]:
    if not _versions_logged:
        _versions_logged.append(consul_version())
        sys.stderr.write(f"\nreal consul: {consul_binary()} ({_versions_logged[0]})\n")
    with ConsulAgent(acl=acl, tls=tls) as agent:
        try:
            yield agent
        finally:
            if request.node.stash.get(_FAILED, False):
                sys.stderr.write(f"--- consul agent log ({agent.addr}) ---\n"
                                 + "\n".join(agent.log_text().splitlines()[-150:]) + "\n")


@pytest.fixture
def consul_agent(request: pytest.FixtureRequest) -> Iterator[ConsulAgent]:
    """A fresh real Consul agent (dev mode, no ACLs) on free loopback ports."""
    yield from _agent(request, acl=False)


@pytest.fixture
def consul_acl_agent(request: pytest.FixtureRequest) -> Iterator[ConsulAgent]:
    """A fresh real Consul agent with ACLs on (default deny, random management token)."""
    yield from _agent(request, acl=True)


@pytest.fixture
def consul_tls_agent(request: pytest.FixtureRequest) -> Iterator[ConsulAgent]:
    """A fresh real Consul agent that also serves HTTPS (`.https_addr`, `.tls_env()`),
    asking for a client certificate; CA and certificates made with `consul tls`."""
    yield from _agent(request, tls=True)


@pytest.fixture
def consul_proxy(consul_agent: ConsulAgent) -> ConsulFaultProxy:
    """`consul_agent` behind a fault proxy: fail_next, set_delay, stop/start, requests()."""
    proxy: ConsulFaultProxy = consul_agent.proxy()
    return proxy
