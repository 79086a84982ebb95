"""TLS, namespace and User-Agent from the standard VAULT_* variables, against a real HTTPS
server on loopback (stdlib, with a throwaway CA made by openssl). A stand-in, not the real
Vault: a certificate for another name and a redirect out of TLS are faults it cannot
produce on demand; the real Vault's TLS is in tests/e2e/test_security.py."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from pathlib import Path

import pytest

from entrypoint.describe import transport_reason
from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.sources.vault.answers import TLSError
from entrypoint.sources.vault.connection import USER_AGENT, Connection
from tests.helpers.http_servers import Pki, Quiet, Seen, health, serving


def test_verification_is_on_by_default(https_vault: tuple[str, Seen]) -> None:
    addr, _ = https_vault
    with pytest.raises(TLSError) as info:
        health({"VAULT_ADDR": addr, "VAULT_TLS_SERVER_NAME": "vault.test"})
    assert "TLS certificate not trusted" in transport_reason(info.value)


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
    addr, _ = https_vault
    with pytest.raises(TLSError) as info:
        health({"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca)})
    assert "127.0.0.1" in transport_reason(info.value)


def test_capath_directory_of_any_names(https_vault: tuple[str, Seen], pki: Pki,
                                       tmp_path: Path) -> None:
    (tmp_path / "our-ca.crt").write_text(pki.ca.read_text())
    (tmp_path / "README").write_text("not a certificate\n")
    addr, _ = https_vault
    env = {"VAULT_ADDR": addr, "VAULT_CAPATH": str(tmp_path),
           "VAULT_TLS_SERVER_NAME": "vault.test"}
    assert Connection.from_environ(env).ca_pem == pki.ca.read_text()  # in memory only
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


class Recorder:
    """A plain-HTTP listener on loopback that records every connection (what it sent)
    and answers each with an empty Vault-like 200: the target of a refused redirect,
    there to show that nothing reached it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown wakes the accept() (close alone would not); a connection already
        # accepted is recorded before the thread ends, so `received` is complete after.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                        data += chunk
                self.received.append(data)
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 13\r\n\r\n{\"data\": {}}\n")


def test_a_redirect_from_https_to_http_is_refused(pki: Pki) -> None:
    """A standby's 307 is followed, but not out of TLS: the token would go in clear. The
    redirect points at a real plain-HTTP listener, which must see no connection at all
    (so no token), while the https server did get the token."""
    from entrypoint.sources.vault.answers import UnexpectedError
    from entrypoint.sources.vault.client import VaultClient

    token = "s.Redirect-Token-Pq52"
    tokens_seen: list[str | None] = []
    with Recorder() as plain:

        class Redirect(Quiet):
            def do_GET(self) -> None:
                tokens_seen.append(self.headers.get("X-Vault-Token"))
                self.send_response(307)
                self.send_header("Location", f"{plain.url}/v1/secret/data/app")
                self.send_header("Content-Length", "0")
                self.end_headers()

        with serving(Redirect, pki) as addr:
            env = {"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca),
                   "VAULT_TLS_SERVER_NAME": "vault.test"}
            log = logging.getLogger("entrypoint.test")
            client = VaultClient(Connection.from_environ(env, log), startup_timeout=0,
                                 log=log)
            client.set_token(token)
            try:
                with pytest.raises(UnexpectedError, match="not followed") as info:
                    client.call("read", lambda: client.api.get("/v1/secret/data/app"))
            finally:
                client.close()
    assert info.value.status == 307
    assert tokens_seen == [token]  # the token went to the https server only
    assert plain.received == []  # the client did not even connect to the http one
