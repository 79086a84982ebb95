"""Vault CLI conventions against a real Vault Proxy (issue 18.5): VAULT_AGENT_ADDR wins
over VAULT_ADDR, a ``unix://`` address reaches a ``listener "unix"``, and a caching proxy
does not hand a replacement read the lease it replaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import load
from entrypoint.sources.vault.answers import TransportError, VaultError
from entrypoint.sources.vault.connection import Connection
from entrypoint.sources.vault.source import VaultSource
from entrypoint.sources.vault.transport import Transport
from tests.helpers.cli import run_cli
from tests.realservers import binaries
from tests.services.ports import stop_process, wait_until


def _transport(sock: Path) -> Transport:
    return Transport(Connection(addr=f"unix://{sock}", socket_path=str(sock)), timeout=30,
                     user_agent="test")


def _healthy(sock: Path) -> bool:
    transport = _transport(sock)
    try:
        return isinstance(transport.request("GET", "/v1/sys/health"), dict)
    except (TransportError, VaultError):
        return False
    finally:
        transport.close()


@pytest.fixture
def proxy_socket(vault_server: Any) -> Iterator[Path]:
    """``vault proxy`` with its lease cache on, listening on a unix socket only."""
    # A short folder: a socket path must fit in sun_path (108 bytes).
    folder = Path(tempfile.mkdtemp(prefix="ep-proxy-"))
    sock = folder / "proxy.sock"
    config = folder / "proxy.hcl"
    config.write_text(f'vault {{\n  address = "{vault_server.addr}"\n}}\ncache {{}}\n'
                      f'listener "unix" {{\n  address = "{sock}"\n  tls_disable = true\n}}\n')
    with (folder / "proxy.log").open("wb") as log:
        process = subprocess.Popen(
            [binaries.vault(), "proxy", f"-config={config}"], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)})
    try:
        wait_until(lambda: process.poll() is None and sock.exists() and _healthy(sock),
                   timeout=30, what="vault proxy listening on its unix socket")
        yield sock
    finally:
        stop_process(process)
        shutil.rmtree(folder)


def test_agent_addr_wins_and_reaches_vault_over_a_unix_socket(
        vault_server: Any, proxy_socket: Path) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw-through-proxy-0123"})
    result = run_cli(["check"], {
        # VAULT_ADDR goes nowhere: only the agent address can answer.
        "VAULT_ADDR": "http://127.0.0.1:9", "VAULT_AGENT_ADDR": f"unix://{proxy_socket}",
        "VAULT_TOKEN": vault_server.root_token, "DB": "vault:secret/app/db#password"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"unix://{proxy_socket}" in result.stdout
    assert "using VAULT_AGENT_ADDR" in result.stderr
    assert "pw-through-proxy-0123" not in result.stdout + result.stderr


def test_a_missing_socket_is_named_in_plain_words(tmp_path: Path) -> None:
    result = run_cli(["render"], {"VAULT_ADDR": f"unix://{tmp_path}/none.sock",
                                  "VAULT_TOKEN": "t", "ENTRYPOINT_STARTUP_TIMEOUT": "0.2s",
                                  "A": "vault:kv/a#b"})
    assert result.returncode == 69
    assert f"Vault at unix://{tmp_path}/none.sock" in result.stderr
    assert "unreachable (no such file or socket)" in result.stderr


def test_replacement_through_a_caching_proxy_gets_a_new_lease(
        database: Any, proxy_socket: Path) -> None:
    database.add_database_role("app", default_ttl=600, max_ttl=3600)
    transport = _transport(proxy_socket)
    # A token created through the proxy is one it manages: its leases are cached.
    created = transport.request("POST", "/v1/auth/token/create-orphan",
                                token=database.root_token,
                                body={"policies": ["root"], "ttl": "1h"})
    token = created["auth"]["client_token"]

    def raw_read() -> str:
        return str(transport.request("GET", "/v1/database/creds/app", token=token)["lease_id"])

    # What a naive client sees: the same request gets the cached lease back.
    first = raw_read()
    assert raw_read() == first
    env = {"VAULT_AGENT_ADDR": f"unix://{proxy_socket}", "VAULT_TOKEN": token}
    source = VaultSource.from_config(load({}, env), env)
    try:
        leases = {source.fetch("database/creds/app").lease_id for _ in range(2)}
        assert len(leases) == 2 and first not in leases
        for lease in leases:
            assert lease is not None
            source.revoke_lease(lease)
    finally:
        source.close()
    transport.request("PUT", "/v1/sys/leases/revoke", token=token, body={"lease_id": first})
    transport.close()
