"""The HTTP side: Vault's request parsing (section 0.5) and answer writing (0.1-0.3).

HTTP/1.1 with keep-alive, as Vault speaks it; the server remembers open connections so
that stop() can cut them the way a dying Vault does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.vaultserver import router, system, wrapping
from tests.vaultserver.faults import LoggedRequest
from tests.vaultserver.wire import Request, Response, VaultError

if TYPE_CHECKING:
    from tests.vaultserver.server import VaultTestServer

MAX_BODY = 32 * 1024 * 1024
CONTROL_PREFIX = "/_test/"
OPERATIONS = {"GET": "read", "HEAD": "read", "POST": "update", "PUT": "update",
              "DELETE": "delete", "LIST": "list", "PATCH": "patch"}
GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class VaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when many clients start at once.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], vault: VaultTestServer) -> None:
        self.vault = vault
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, VaultHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone or a connection cut by stop() is normal here; stay quiet."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class VaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Go's net/http turns Nagle off on every connection; without this every keep-alive
    # answer waits for the client's delayed ACK (40 ms), which real Vault never does.
    disable_nagle_algorithm = True
    server: VaultHTTPServer
    server_version = "VaultTestServer"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log on the server object is the record."""

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_LIST = do_PATCH = do_GET

    # -- one request ------------------------------------------------------------------------

    def _serve(self) -> None:
        vault = self.server.vault
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except VaultError as exc:
            self.close_connection = True  # the unread body would poison the connection
            self._write(Response(exc.status, {"errors": exc.errors}), head=False)
            return
        if split.path.startswith(CONTROL_PREFIX):
            from tests.vaultserver.control import handle_control

            status, payload = handle_control(vault, self.command, split.path, body)
            self._write(Response(status, payload), head=False)
            return
        if not split.path.startswith("/v1/"):
            self._write(Response(404, {"errors": []}), head=False)
            return
        path = unquote(split.path[len("/v1/") :]).replace("//", "/")
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        delay, forced = vault.faults.take(path)
        if delay:
            time.sleep(delay)
        request: Request | None = None
        try:
            if forced is not None:
                response = forced
            elif path == "sys/health":
                response = system.health(vault.state, self.command, query)
            elif path == "sys/seal-status":
                response = system.seal_status(vault.state, self.command)
            else:
                ttl = wrapping.wrap_ttl(self.headers.get("X-Vault-Wrap-TTL"))
                request = self._request(path, query, body)
                response = router.dispatch(vault.state, request)
                if ttl is not None:
                    response = wrapping.wrap(vault.state, request, response, ttl)
        except VaultError as exc:
            response = Response(exc.status, {"errors": exc.errors})
        except Exception as exc:  # a bug of ours must still answer as Vault would
            response = Response(500, {"errors": [f"internal error: {exc!r}"]})
        accessor = request.accessor if request is not None else self._accessor_of_header()
        # Logged before the answer goes out: a client that has its answer finds it logged.
        vault.faults.record(LoggedRequest(self.command, path, response.status, accessor,
                                          time.time(), split.query))
        self._write(response, head=self.command == "HEAD")

    def _accessor_of_header(self) -> str | None:
        token = self._token()
        if not token:
            return None
        entry = self.server.vault.state.tokens.get(token)
        return entry.accessor if entry is not None else None

    def _token(self) -> str | None:
        token = self.headers.get("X-Vault-Token")
        if token:
            return token
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise VaultError(413, "http: request body too large")
        return self.rfile.read(length) if length else b""

    def _request(self, path: str, query: dict[str, str], body: bytes) -> Request:
        method = self.command
        operation = OPERATIONS.get(method)
        if operation is None:
            raise VaultError(405, "unsupported operation")
        if operation == "patch" and self.headers.get("Content-Type") != \
                "application/merge-patch+json":
            raise VaultError(415, "PATCH requires the Content-Type header to be "
                             "application/merge-patch+json")
        data: dict[str, Any] = {}
        stripped = body.strip()
        content_type = self.headers.get("Content-Type", "")
        if stripped:
            if content_type.startswith("application/x-www-form-urlencoded") and \
                    stripped[:1] not in (b"{", b"["):
                data = dict(parse_qsl(stripped.decode(), keep_blank_values=True))
            else:
                try:
                    parsed = json.loads(stripped)
                except ValueError:
                    raise VaultError(400, "error parsing JSON") from None
                if not isinstance(parsed, dict):
                    raise VaultError(400, "error parsing JSON")
                data = parsed
        if method in ("GET", "HEAD", "DELETE"):
            if "list" in query and method == "GET":
                # Vault parses it with Go's strconv.ParseBool: anything else is a 400.
                flag = query["list"]
                if flag not in GO_TRUE + GO_FALSE:
                    raise VaultError(400)
                if flag in GO_TRUE:
                    operation = "list"
            for key, value in query.items():
                if key not in ("help", "list"):
                    data.setdefault(key, value)
        # hvac sends nulls for unset optional fields: treat them as absent.
        data = {key: value for key, value in data.items() if value is not None}
        request = Request(method, operation, path, data, self.headers, self._token(),
                          self.client_address[0])
        return request

    def _write(self, response: Response, head: bool) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Cache-Control", "no-store")
        namespace = self.headers.get("X-Vault-Namespace")
        if namespace:
            self.send_header("X-Vault-Namespace", namespace)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(0 if head else len(payload)))
        self.end_headers()
        if payload and not head:
            self.wfile.write(payload)
