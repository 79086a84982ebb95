"""TLS, namespace and User-Agent from the standard VAULT_* variables, against a real HTTPS
server on loopback (stdlib, with a throwaway CA made by openssl)."""

from __future__ import annotations

import contextlib
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

from entrypoint.describe import transport_reason
from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.sources.vault.answers import TLSError
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


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], pki: Pki | None = None) -> Iterator[str]:
    """A real server on loopback (TLS with ``pki``'s certificate) -> its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if pki is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.cert, pki.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"{'https' if pki else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https_vault(pki: Pki) -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(Quiet):
        def do_GET(self) -> None:
            seen.headers.append(dict(self.headers.items()))
            body = json.dumps({"initialized": True, "sealed": False, "standby": False,
                               "version": "1.16.3"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler, pki) as addr:
        yield addr, seen


def health(env: dict[str, str], timeout: float = 0.0) -> dict[str, object]:
    log = logging.getLogger("entrypoint.test")
    client = VaultClient(Connection.from_environ(env, log), startup_timeout=timeout, log=log)
    try:
        result = client.call("health", lambda: client.anonymous.get("/v1/sys/health"))
        assert isinstance(result, dict)
        return result
    finally:
        client.close()


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


class Tunnel(Quiet):
    """An HTTP proxy: CONNECT tunnels (to an https Vault) and absolute-URL requests (to an
    http one, answered by the proxy itself). Every request line is kept."""

    seen: list[str] = []

    def do_CONNECT(self) -> None:
        import socket

        self.seen.append(f"CONNECT {self.path}")
        port = int(self.path.rsplit(":", 1)[1])  # the test's servers are all on loopback
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.send_response(200)
        self.end_headers()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                dst.close()

        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join(5)
        self.close_connection = True

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        body = b'{"sealed": false, "via": "proxy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    Tunnel.seen = []
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
                 "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serving(Tunnel) as address:
        monkeypatch.setenv("HTTPS_PROXY", address)
        monkeypatch.setenv("HTTP_PROXY", address)
        yield Tunnel.seen


def test_an_https_vault_is_reached_through_the_proxys_tunnel(
        https_vault: tuple[str, Seen], pki: Pki, proxy: list[str]) -> None:
    addr, seen = https_vault
    env = {"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca), "VAULT_TLS_SERVER_NAME": "vault.test"}
    assert health(env)["version"] == "1.16.3"  # TLS end to end: the proxy sees no request
    assert proxy == [f"CONNECT {addr.removeprefix('https://')}"]
    assert seen.headers[-1]["User-Agent"] == USER_AGENT


def test_an_http_vault_goes_through_the_proxy_unless_no_proxy_names_it(
        proxy: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert health({"VAULT_ADDR": "http://vault.invalid:8200"})["via"] == "proxy"
    assert proxy == ["GET http://vault.invalid:8200/v1/sys/health"]
    monkeypatch.setenv("NO_PROXY", "vault.invalid")
    with pytest.raises(UnavailableError) as info:
        health({"VAULT_ADDR": "http://vault.invalid:8200"})
    assert "unreachable (host name not found)" in str(info.value)
    assert len(proxy) == 1


@pytest.fixture
def plain_vault() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """An http server speaking HTTP/1.1 keep-alive that closes every connection after its
    first answer (as a server's idle timeout does), and answers /v1/limited with 429."""
    requests: list[tuple[str, str]] = []

    class Handler(Quiet):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            requests.append((self.command, self.path))
            status, body = 200, {"data": {"keys": ["a", "b/"]}}
            if self.path == "/v1/limited":
                status, body = 429, {
                    "errors": ['request path "limited": rate limit quota exceeded']}
            if self.path == "/v1/missing":
                status, body = 404, {"errors": [], "data": {"version": 3}}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            if status == 429:
                self.send_header("Retry-After", "3")
            self.end_headers()
            self.wfile.write(raw)
            self.wfile.flush()
            self.close_connection = True  # without saying so: the client finds out

        do_GET = do_LIST = _answer

    with serving(Handler) as addr:
        yield addr, requests


def test_a_keep_alive_connection_the_server_closed_is_replaced(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    from entrypoint.sources.vault.transport import Transport

    addr, requests = plain_vault
    transport = Transport(Connection.from_environ({"VAULT_ADDR": addr}), timeout=5,
                          user_agent=USER_AGENT)
    try:
        for _ in range(3):
            assert transport.request("LIST", "/v1/secret/metadata/app")["data"]["keys"] == [
                "a", "b/"]
    finally:
        transport.close()
    assert requests == [("LIST", "/v1/secret/metadata/app")] * 3


def test_error_statuses_are_named_and_keep_vaults_words(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    from entrypoint.sources.vault import answers
    from entrypoint.sources.vault.client import transient_reason
    from entrypoint.sources.vault.transport import Transport

    addr, _ = plain_vault
    transport = Transport(Connection.from_environ({"VAULT_ADDR": addr}), timeout=5,
                          user_agent=USER_AGENT)
    try:
        with pytest.raises(answers.RateLimitExceeded) as limited:
            transport.request("GET", "/v1/limited", token="s.not-in-messages")
        with pytest.raises(answers.InvalidPath) as missing:
            transport.request("GET", "/v1/missing")
    finally:
        transport.close()
    assert limited.value.retry_after == "3" and limited.value.status == 429
    assert str(limited.value) == 'request path "limited": rate limit quota exceeded'
    assert transient_reason(limited.value) == "rate limited (HTTP 429)"
    assert "s.not-in-messages" not in repr(limited.value.__dict__)
    assert missing.value.json == {"errors": [], "data": {"version": 3}}
    assert transient_reason(missing.value) is None


def test_a_redirect_from_https_to_http_is_refused(pki: Pki) -> None:
    """A standby's 307 is followed, but not out of TLS: the token would go in clear."""
    from entrypoint.sources.vault.answers import UnexpectedError

    class Redirect(Quiet):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/v1/sys/health")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Redirect, pki) as addr:
        env = {"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca),
               "VAULT_TLS_SERVER_NAME": "vault.test"}
        with pytest.raises(UnexpectedError, match="not followed") as info:
            health(env)
    assert info.value.status == 307
