"""The Vault transport (sources/vault/transport.py, proxy.py) against real servers on
loopback: a proxy (CONNECT tunnels and absolute URLs), keep-alive connections a server
closes, Vault's error statuses, and what must never be sent or shown. Stand-ins, not the
real Vault: these are faults (an idle connection closed, a 429, a timeout, a proxy) it
cannot produce on demand; the real Vault's TLS is in tests/e2e/test_security.py."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.describe import transport_reason
from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.sources.vault.answers import TransportError
from entrypoint.sources.vault.connection import USER_AGENT, Connection
from entrypoint.sources.vault.transport import Transport
from tests.helpers.http_servers import Pki, Quiet, Seen, health, serving


@contextlib.contextmanager
def transport_to(addr: str, timeout: float = 5) -> Iterator[Transport]:
    transport = Transport(Connection.from_environ({"VAULT_ADDR": addr}), timeout=timeout,
                          user_agent=USER_AGENT)
    try:
        yield transport
    finally:
        transport.close()


class Tunnel(Quiet):
    """An HTTP proxy: CONNECT tunnels (to an https Vault) and absolute-URL requests (to an
    http one, answered by the proxy itself). Every request line is kept."""

    seen: list[str] = []
    auth: list[str | None] = []

    def do_CONNECT(self) -> None:
        import socket

        self.seen.append(f"CONNECT {self.path}")
        self.auth.append(self.headers.get("Proxy-Authorization"))
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
        self.auth.append(self.headers.get("Proxy-Authorization"))
        self.answer(200, {"sealed": False, "via": "proxy"})


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    Tunnel.seen, Tunnel.auth = [], []
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
            self.answer(status, body, **({"Retry_After": "3"} if status == 429 else {}))
            self.wfile.flush()
            self.close_connection = True  # without saying so: the client finds out

        do_GET = do_LIST = _answer

    with serving(Handler) as addr:
        yield addr, requests


def test_a_keep_alive_connection_the_server_closed_is_replaced(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:

    addr, requests = plain_vault
    with transport_to(addr) as transport:
        for _ in range(3):
            assert transport.request("LIST", "/v1/secret/metadata/app")["data"]["keys"] == [
                "a", "b/"]
    assert requests == [("LIST", "/v1/secret/metadata/app")] * 3


def test_error_statuses_are_named_and_keep_vaults_words(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    from entrypoint.sources.vault import answers
    from entrypoint.sources.vault.client import transient_reason

    addr, _ = plain_vault
    with transport_to(addr) as transport:
        with pytest.raises(answers.RateLimitExceeded) as limited:
            transport.request("GET", "/v1/limited", token="s.not-in-messages")
        with pytest.raises(answers.InvalidPath) as missing:
            transport.request("GET", "/v1/missing")
    assert limited.value.retry_after == "3" and limited.value.status == 429
    assert str(limited.value) == 'request path "limited": rate limit quota exceeded'
    assert transient_reason(limited.value) == "rate limited (HTTP 429)"
    assert "s.not-in-messages" not in repr(limited.value.__dict__)
    assert missing.value.json == {"errors": [], "data": {"version": 3}}
    assert transient_reason(missing.value) is None




def test_the_proxys_credentials_go_to_the_proxy_only(
        https_vault: tuple[str, Seen], pki: Pki, proxy: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    address = f"http://ops%40corp:pa%3Ass@{proxy_address()}"
    monkeypatch.setenv("HTTPS_PROXY", address)
    monkeypatch.setenv("HTTP_PROXY", address)
    expected = "Basic " + base64.b64encode(b"ops@corp:pa:ss").decode()
    addr, seen = https_vault
    env = {"VAULT_ADDR": addr, "VAULT_CACERT": str(pki.ca), "VAULT_TLS_SERVER_NAME": "vault.test"}
    health(env)
    health({"VAULT_ADDR": "http://vault.invalid:8200"})
    assert Tunnel.auth == [expected, expected]  # on the CONNECT, and on the plain request
    assert all("Proxy-Authorization" not in h for h in seen.headers)  # not to Vault


def proxy_address() -> str:
    return os.environ["HTTP_PROXY"].removeprefix("http://")


@pytest.mark.parametrize(("no_proxy", "url", "direct"), [
    ("10.0.0.0/8", "https://10.1.2.3:8200", True),
    ("10.0.0.0/8", "https://192.168.1.2:8200", False),
    ("10.0.0.0/8", "https://vault.internal:8200", False),
    (".internal", "https://vault.internal:8200", True),
    ("*.internal", "https://vault.internal:8200", True),
    ("internal", "https://vault.internal:8200", True),
    ("ternal", "https://vault.internal:8200", False),
    ("vault.internal:8200", "https://vault.internal:8200", True),
    ("vault.internal:8201", "https://vault.internal:8200", False),
    ("localhost, 127.0.0.1", "http://127.0.0.1:8200", True),
    ("*", "https://anything.example", True),
    ("", "https://vault.internal:8200", False),
])
def test_no_proxy_entries(no_proxy: str, url: str, direct: bool) -> None:
    from entrypoint.sources.vault.proxy import environ_proxy

    found = environ_proxy(url, {"HTTPS_PROXY": "http://proxy:3128",
                                "HTTP_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})
    assert (found is None) == direct, found


def test_proxy_settings_that_cannot_work_are_config_errors() -> None:
    from entrypoint.sources.vault.proxy import environ_proxy

    with pytest.raises(ConfigError, match="variable https_proxy: a https:// proxy"):
        environ_proxy("https://vault:8200", {"https_proxy": "https://proxy:3128"})
    with pytest.raises(ConfigError) as port:
        environ_proxy("https://vault:8200", {"HTTPS_PROXY": "http://u:secret-pw@proxy:80a"})
    assert "variable HTTPS_PROXY: the proxy's port is not a number" in str(port.value)
    assert "secret-pw" not in str(port.value)
    found = environ_proxy("https://vault:8200", {"HTTPS_PROXY": "http://u:secret-pw@proxy"})
    assert found is not None and found[:2] == ("proxy", 80)
    assert "secret-pw" not in repr(found) and "secret-pw" not in str(found)


def test_a_token_with_a_line_break_is_neither_sent_nor_shown(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    addr, requests = plain_vault
    with transport_to(addr) as transport, pytest.raises(ConfigError) as info:
        transport.request("GET", "/v1/secret/data/app", token="hvs.first-one\nhvs.second")
    assert "the token holds a line break" in str(info.value)
    assert "hvs." not in str(info.value) + str(info.value.hint) and requests == []


def test_what_http_client_refuses_is_not_quoted(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    """http.client's own refusal (here a header name with a line break) quotes what it
    refused; the message says what happened instead, and nothing is sent."""
    addr, requests = plain_vault
    with transport_to(addr) as transport, pytest.raises(ConfigError) as info:
        transport.request("GET", "/v1/secret/data/app", headers={"X-Secret\npw": "v"})
    assert str(info.value) == "Vault request not sent: it holds a control character"
    assert info.value.exit_code == 78 and requests == []


def test_tls_files_that_cannot_be_used_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    from entrypoint.sources.vault.client import VaultClient

    (tmp_path / "not-pem.crt").write_text("this is not a certificate\n")
    cases = [
        ({"VAULT_CACERT": str(tmp_path / "not-pem.crt")}, "cannot be used"),
        # The CA's key is not the server certificate's.
        ({"VAULT_CLIENT_CERT": str(pki.cert), "VAULT_CLIENT_KEY": str(pki.ca.with_name(
            "ca.key"))}, "key values mismatch"),
    ]
    log = logging.getLogger("entrypoint.test")
    for extra, words in cases:
        env = {"VAULT_ADDR": "https://vault.test:8200", **extra}
        with pytest.raises(ConfigError) as info:
            VaultClient(Connection.from_environ(env, log), startup_timeout=0, log=log)
        assert words in str(info.value) and info.value.exit_code == 78
        assert "PRIVATE KEY" not in str(info.value)


def test_a_request_that_timed_out_is_not_sent_again() -> None:
    """A read that times out on a reused connection may be one Vault is working on (a
    GET of database/creds makes a database user): it is not replayed."""
    got: list[str] = []

    class Slow(Quiet):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            got.append(self.path)
            if self.path == "/v1/slow":
                time.sleep(1.0)  # the slowness under test: longer than the client waits
            # The slow answer finds the client gone, as the test means it to.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.answer(200, {"data": {}})

    with serving(Slow) as addr, transport_to(addr, timeout=0.3) as transport:
        transport.request("GET", "/v1/fast")  # a keep-alive connection, now idle
        with pytest.raises(TransportError) as info:
            transport.request("GET", "/v1/slow")
    assert transport_reason(info.value) == "timed out"
    assert got == ["/v1/fast", "/v1/slow"]


def test_after_start_up_two_idle_connections_are_kept(
        plain_vault: tuple[str, list[tuple[str, str]]]) -> None:
    """The start's parallel reads open up to vault_concurrency connections; the steady
    state needs two, and the others are closed rather than held open at Vault."""
    import http.client

    from entrypoint.sources.vault.client import STEADY_CONNECTIONS

    addr, _ = plain_vault
    transport = Transport(Connection.from_environ({"VAULT_ADDR": addr}), timeout=5,
                          user_agent=USER_AGENT)
    idle = [http.client.HTTPConnection("127.0.0.1") for _ in range(5)]
    transport._idle = list(idle)  # five left by the start's parallel reads
    transport.trim(STEADY_CONNECTIONS)
    assert transport._idle == idle[-2:]  # the most recently used
    transport.close()
    assert transport._idle == []
