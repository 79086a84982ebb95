"""Vault's HTTP API on the standard library's ``http.client``: pooled keep-alive
connections, TLS as the ``vault`` CLI sets it up, a Vault Agent's unix socket, the
environment's proxy, standby redirects, and Vault's errors as exceptions by status.

Why not hvac over requests (benchmarks/README.md, "Vault start" and "resident memory"):
their imports cost 65 to 90 ms of a 250 ms start and 5 MB of the supervisor's memory
for its whole life, while the supervisor calls a dozen endpoints with JSON bodies. hvac
stays the tests' admin client, where nothing is measured.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlencode, urlsplit

from entrypoint.errors import ConfigError, PermissionDenied
from entrypoint.sources.vault.answers import (
    TLSError,
    TransportError,
    UnexpectedError,
    error_for,
)
from entrypoint.sources.vault.proxy import Proxy, environ_proxy

if TYPE_CHECKING:
    import ssl

    from entrypoint.sources.vault.connection import Connection

# Go's net/http retries a request that died on a reused keep-alive connection when it is
# safe to send twice; so do we (the server may close an idle connection at any moment).
# Never after a timeout: Vault may be working on it (a GET of database/creds makes a user).
REPLAYABLE = frozenset({"GET", "HEAD", "LIST", "OPTIONS"})
CLOSED_BY_PEER = (http.client.RemoteDisconnected, ConnectionResetError,
                  ConnectionAbortedError, BrokenPipeError)
# http.client refuses these in a header with a ValueError that quotes the value.
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")
# A standby answers 307 with the active node's address; the vault CLI follows it with
# the same method, body and headers.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10

ResponseHook = Callable[[str, int, float], None]


class Transport:
    """Sends requests to one Vault; safe to share between threads."""

    def __init__(self, connection: Connection, *, timeout: float, user_agent: str,
                 pool_size: int = 10, on_response: ResponseHook | None = None) -> None:
        self.connection = connection
        self.timeout = timeout
        self.user_agent = user_agent
        self.pool_size = pool_size
        self.on_response = on_response
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._context: ssl.SSLContext | None = None
        base = urlsplit(connection.url)
        self._origin = _origin_of(base)
        self._prefix = base.path.rstrip("/")
        self._proxy = None if connection.socket_path else environ_proxy(connection.url)
        if base.scheme == "https":
            self._tls()  # a TLS file that cannot be used is a configuration error, at once

    # -- the API -----------------------------------------------------------------

    def request(self, method: str, path: str, *, token: str = "",
                body: Mapping[str, Any] | None = None,
                params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer of a 2xx (None when it has no body); a
        :class:`~entrypoint.sources.vault.answers.VaultError` for any other status."""
        sent = {"User-Agent": self.user_agent, "X-Vault-Request": "true"}
        if token:
            sent["X-Vault-Token"] = token
        if self.connection.namespace:
            sent["X-Vault-Namespace"] = self.connection.namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        for name, value in sent.items():
            if any(c in value for c in FORBIDDEN_IN_HEADERS):
                what = "the token" if name == "X-Vault-Token" else f"header {name}"
                raise ConfigError(f"Vault request not sent: {what} holds a line break or "
                                  "a NUL", hint="expected one token on one line (a token "
                                  "file holds only the token)")
        target = self._prefix + "/" + path.lstrip("/")
        if params:
            target += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        status, answer_headers, payload = self._send(method.upper(), target, data, sent)
        text = payload.decode("utf-8", "replace")
        decoded: Any = None
        if text.strip():
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
        if status >= 400:
            raise error_for(status, method.upper(), target.split("?")[0], decoded, text,
                            answer_headers.get("Retry-After"))
        return decoded

    def trim(self, keep: int) -> None:
        """Close idle connections beyond the ``keep`` most recently used."""
        with self._lock:
            self._idle, extra = self._idle[-keep:] if keep else [], self._idle[:-keep or None]
        for conn in extra:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- sending -------------------------------------------------------------------

    def _send(self, method: str, target: str, data: bytes | None,
              headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        origin: tuple[str, str, int] | None = None  # None: our own Vault, pooled
        for _ in range(MAX_REDIRECTS + 1):
            started = time.monotonic()
            status, answer, payload = self._exchange(origin, method, target, data, headers)
            if self.on_response is not None:
                self.on_response(urlsplit(target).path, status, time.monotonic() - started)
            location = answer.get("Location")
            if status not in REDIRECTS or not location:
                return status, answer, payload
            moved = urlsplit(location)
            if moved.scheme in ("http", "https") and moved.hostname:
                if moved.scheme == "http" and (origin or self._origin)[0] == "https":
                    # The token would leave TLS: refused, as a downgrade always is.
                    raise UnexpectedError(
                        f"a redirect from https to http://{moved.hostname} was not "
                        "followed (the token would be sent in clear)", status=status,
                        method=method, path=urlsplit(target).path)
                origin = _origin_of(moved)
            target = moved.path + (f"?{moved.query}" if moved.query else "")
            if status == 303:
                method, data = "GET", None
        raise TransportError(f"more than {MAX_REDIRECTS} redirects")

    def _exchange(self, origin: tuple[str, str, int] | None, method: str, target: str,
                  data: bytes | None,
                  headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        where = origin or self._origin
        target, headers = self._through_proxy(where, target, headers)
        for attempt in (1, 2):
            # The second attempt never takes another idle connection: it may be as stale.
            conn, reused = ((self._new(*where), False) if origin or attempt == 2
                            else self._checkout())
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1 and isinstance(exc, CLOSED_BY_PEER) and (
                        method in REPLAYABLE or isinstance(exc, BrokenPipeError)):
                    continue  # the server had closed the idle connection: a new one
                raise _transport_error(exc) from exc
            except ValueError:  # http.client's own refusal; its text may quote a value
                conn.close()
                raise ConfigError("Vault request not sent: it holds a control "
                                  "character") from None
            if origin or response.will_close:
                conn.close()
            else:
                self._checkin(conn)
            return response.status, response.headers, payload
        raise AssertionError("unreachable")  # pragma: no cover

    def _through_proxy(self, origin: tuple[str, str, int], target: str,
                       headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        # Through a proxy, plain http takes the absolute URL and the proxy's credentials;
        # https is tunnelled (CONNECT, see _new) and sends the proxy nothing else.
        scheme, host, port = origin
        proxy = self._proxy_for(*origin)
        if scheme != "http" or proxy is None:
            return target, headers
        if proxy.authorization:
            headers = {**headers, "Proxy-Authorization": proxy.authorization}
        return f"http://{host}:{port}{target}", headers

    def _proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        if self.connection.socket_path:
            return None  # no proxy carries a unix socket
        if (scheme, host, port) == self._origin:
            return self._proxy
        return environ_proxy(f"{scheme}://{host}:{port}")  # a redirect's: rare

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _still_open(conn):
                    return conn, True
                conn.close()
        return self._new(*self._origin), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _new(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if self.connection.socket_path:
            return UnixConnection(self.connection.socket_path, self.timeout,
                                  self.connection.app_uid)
        proxy = self._proxy_for(scheme, host, port)
        if scheme == "https":
            # VAULT_TLS_SERVER_NAME names our Vault's certificate, not a redirect target's.
            name = self.connection.server_name if (scheme, host, port) == self._origin else None
            conn: http.client.HTTPConnection = ServerNameConnection(
                *(proxy[:2] if proxy else (host, port)), timeout=self.timeout,
                context=self._tls(), server_name=name or host)
            if proxy is not None:
                conn.set_tunnel(host, port, headers={"Proxy-Authorization": proxy.authorization}
                                if proxy.authorization else None)
            return conn
        return http.client.HTTPConnection(*(proxy[:2] if proxy else (host, port)),
                                          timeout=self.timeout)

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = tls_context(self.connection)
            except OSError as exc:
                # ssl.SSLError is an OSError: a file that is no PEM, a key that is not
                # the certificate's. Its reason names the problem, never the file's bytes.
                reason = getattr(exc, "reason", None) or exc.strerror or "unreadable"
                raise ConfigError(
                    "the TLS files for Vault cannot be used: "
                    f"{str(reason).lower().replace('_', ' ')}",
                    hint="check VAULT_CACERT / VAULT_CAPATH (PEM certificates) and that "
                         "VAULT_CLIENT_KEY is the key of VAULT_CLIENT_CERT") from None
        return self._context


class ServerNameConnection(http.client.HTTPSConnection):
    """Verifies (and sends SNI for) ``server_name``, which may differ from the address:
    VAULT_TLS_SERVER_NAME, for a Vault reached through an IP or a tunnel."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext,
                 server_name: str) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, and the proxy's CONNECT if any
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self.server_name)


class UnixConnection(http.client.HTTPConnection):
    """Every connection goes to ``socket_path``: a Vault Agent or Vault Proxy
    ``listener "unix"``, the node-local caching pattern.

    A path is no proof of who listens: an app that can write the socket's folder (an
    emptyDir is 0777) can bind its own socket and rename it over the agent's, and would
    get the token. So the listener's uid (``SO_PEERCRED``, as for the control socket) is
    checked before anything is sent: one run by the app's uid (``app_uid``, set when the
    app runs as another user than us) is refused."""

    def __init__(self, socket_path: str, timeout: float, app_uid: int | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path
        self.app_uid = app_uid

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
            if self.app_uid is not None:
                self._check_listener(sock, self.app_uid)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def _check_listener(self, sock: socket.socket, app_uid: int) -> None:
        from entrypoint.ops.control import peer

        pid, uid = peer(sock)
        if uid == app_uid:
            raise PermissionDenied(
                f"Vault socket {self.socket_path} refused: it is served by uid {uid} "
                f"(pid {pid}), the app's user; nothing was sent",
                hint="expected the Vault Agent or Proxy's own user: the app can write "
                     "the socket's folder and may have replaced the socket; put the "
                     "socket in a folder only the agent can write: see docs/security.md")


def tls_context(connection: Connection) -> ssl.SSLContext:
    """Verification on, against VAULT_CACERT/VAULT_CAPATH's certificates or the system's
    roots (as the vault CLI; SSL_CERT_FILE and SSL_CERT_DIR apply), unless
    VAULT_SKIP_VERIFY."""
    import ssl

    verify = connection.verify
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None,
                                         cadata=connection.ca_pem)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if connection.client_cert:
        context.load_cert_chain(*connection.client_cert)
    return context


def _origin_of(url: SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, its port the scheme's when it names none."""
    return (url.scheme, url.hostname or "localhost",
            url.port or (443 if url.scheme == "https" else 80))


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server has not closed: nothing to read yet."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _transport_error(exc: BaseException) -> TransportError:
    ssl_module = sys.modules.get("ssl")
    if ssl_module is not None and isinstance(exc, ssl_module.SSLError):
        return TLSError(str(exc))
    return TransportError(str(exc) or type(exc).__name__)
