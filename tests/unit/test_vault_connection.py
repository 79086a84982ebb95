"""TLS, namespace and User-Agent from the standard VAULT_* variables, against a real HTTPS
server on loopback (stdlib, with a throwaway CA made by openssl)."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.sources.vault.client import VaultClient
from entrypoint.sources.vault.connection import USER_AGENT, Connection


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for the name vault.test only (not 127.0.0.1)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=test ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=vault.test", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:vault.test\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext", cwd=d)
    return Pki(ca=d / "ca.pem", cert=d / "srv.pem", key=d / "srv.key")


@dataclass
class Seen:
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def https_vault(pki: Pki) -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.headers.append(dict(self.headers.items()))
            body = json.dumps({"initialized": True, "sealed": False, "standby": False,
                               "version": "1.16.3"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def health(env: dict[str, str], timeout: float = 0.0) -> dict[str, object]:
    log = logging.getLogger("entrypoint.test")
    client = VaultClient(Connection.from_environ(env, log), startup_timeout=timeout, log=log)
    try:
        result = client.call("health", lambda: client.anonymous.sys.read_health_status(
            method="GET"))
        assert isinstance(result, dict)
        return result
    finally:
        client.close()


def test_verification_is_on_by_default(https_vault: tuple[str, Seen]) -> None:
    import requests

    addr, _ = https_vault
    with pytest.raises(requests.exceptions.SSLError):
        health({"VAULT_ADDR": addr, "VAULT_TLS_SERVER_NAME": "vault.test"})


def test_cacert_and_server_name(https_vault: tuple[str, Seen], pki: Pki) -> None:
    addr, seen = https_vault
    env = {"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca),
           "VAULT_TLS_SERVER_NAME": "vault.test", "VAULT_NAMESPACE": "team-a"}
    assert health(env)["version"] == "1.16.3"
    assert seen.headers[-1]["User-Agent"] == USER_AGENT
    assert seen.headers[-1]["X-Vault-Namespace"] == "team-a"
    assert USER_AGENT.startswith("vault-entrypoint/")


def test_without_server_name_the_ip_does_not_match(https_vault: tuple[str, Seen],
                                                   pki: Pki) -> None:
    import requests

    addr, _ = https_vault
    with pytest.raises(requests.exceptions.SSLError):
        health({"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca)})


def test_capath_directory_of_any_names(https_vault: tuple[str, Seen], pki: Pki,
                                       tmp_path: Path) -> None:
    (tmp_path / "our-ca.crt").write_text(pki.ca.read_text())
    (tmp_path / "README").write_text("not a certificate\n")
    addr, _ = https_vault
    env = {"VAULT_ADDR": addr, "VAULT_CAPATH": str(tmp_path),
           "VAULT_TLS_SERVER_NAME": "vault.test"}
    assert health(env)["sealed"] is False


def test_skip_verify_works_and_warns_loudly(https_vault: tuple[str, Seen],
                                            caplog: pytest.LogCaptureFixture) -> None:
    addr, _ = https_vault
    with caplog.at_level(logging.WARNING):
        assert health({"VAULT_ADDR": addr, "VAULT_SKIP_VERIFY": "true"})["sealed"] is False
    assert any("NOT verified" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


@pytest.mark.parametrize(("env", "needle"), [
    ({"VAULT_ADDR": ""}, "VAULT_ADDR is empty"),
    ({"VAULT_ADDR": "vault:8200"}, "http:// or https://"),
    ({"VAULT_ADDR": "https://v", "VAULT_CACERT": "/nonexistent/ca.pem"}, "VAULT_CACERT"),
    ({"VAULT_ADDR": "https://v", "VAULT_CLIENT_CERT": "/etc/hostname"}, "set together"),
    ({"VAULT_ADDR": "https://v", "VAULT_SKIP_VERIFY": "perhaps"}, "VAULT_SKIP_VERIFY"),
])
def test_bad_settings_are_config_errors(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Connection.from_environ(env)
    assert needle in str(info.value)


def test_unreachable_gives_up_after_startup_timeout(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING), pytest.raises(UnavailableError) as info:
        health({"VAULT_ADDR": f"http://127.0.0.1:{port}"}, timeout=1.5)
    assert info.value.exit_code == 69
    assert "unreachable" in str(info.value) and "startup_timeout (1.5s)" in str(info.value)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert retries and all(hasattr(r, "delay") for r in retries)
