"""Consul's HTTP API for the KV store, on a loopback port, with fault controls for tests.

Endpoints: GET/PUT/DELETE /v1/kv/<key> (?raw, ?recurse, ?keys with ?separator, ?cas,
?flags, blocking ?index=N&wait=5s) and GET /v1/status/leader. Answers carry Consul's
headers (X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact) and its JSON shape.
With a token required, the token comes as X-Consul-Token, `Authorization: Bearer` or
?token=, and a request without it gets Consul's 403.

Blocking queries return when the answer's index passes N or the wait ends, without the
random extra wait/16 Consul adds, so that tests can count on the time.

Fault controls: fail_next(n, status), set_delay(seconds), stop()/start()/restart() on the
same port (dropping open connections and parked blocking queries, as a dying agent does),
and a request log.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.consulserver.store import KVEntry, KVStore
from tests.services.ports import Service

LOOPBACK = "127.0.0.1"
KV_PREFIX = "/v1/kv/"
DEFAULT_WAIT = 300.0  # Consul's default for a blocking query without ?wait
MAX_WAIT = 600.0  # and its ceiling
MAX_VALUE_SIZE = 512 * 1024  # Consul's default kv_max_value_size
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration like "5s", "1m30s", "250ms"; ValueError if it is not one."""
    if text in ("0", ""):
        return 0.0
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True)
class ConsulRequest:
    """One request as the server saw it, for assertions."""

    method: str
    path: str
    query: dict[str, str]
    token: str | None
    status: int
    started: float  # time.monotonic() when it arrived
    finished: float  # and when it was answered


_Result = KVEntry | None | list[KVEntry]
_Query = Callable[[], tuple[int, _Result]]


class _Aborted(Exception):
    """The server is stopping: drop the connection without an answer."""


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    index: int | None = None


class ConsulServer(Service):
    """The stand-in; a context manager, or start()/stop() yourself."""

    def __init__(self, acl_token: str | None = None) -> None:
        self.host: str = LOOPBACK
        self.port: int = 0
        self.store = KVStore()
        self._acl_token = acl_token
        self._lock = threading.Lock()
        self._failures_left = 0
        self._failure_status = 500
        self._delay = 0.0
        self._log: list[ConsulRequest] = []
        self._blocked = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Set while no server runs; parked queries and delays watch it to let go.
        self._down = threading.Event()
        self._down.set()

    # -- addresses -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The agent's address with scheme, as CONSUL_HTTP_ADDR takes it."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = {"CONSUL_HTTP_ADDR": self.addr}
        if self._acl_token is not None:
            env["CONSUL_HTTP_TOKEN"] = self._acl_token
        return env

    # -- data, straight into the store -----------------------------------------------------

    def put(self, key: str, value: str | bytes, flags: int = 0) -> int:
        """Write a key as another client would; returns the new index."""
        self.store.put(key, value.encode() if isinstance(value, str) else value, flags)
        return self.store.get(key)[0]

    def get(self, key: str) -> bytes | None:
        entry = self.store.get(key)[1]
        return None if entry is None else entry.value

    def delete(self, key: str, recurse: bool = False) -> None:
        self.store.delete(key, recurse=recurse)

    @property
    def index(self) -> int:
        return self.store.index

    # -- controls --------------------------------------------------------------------------

    def require_token(self, token: str | None) -> None:
        """Ask every request for this ACL token from now on (None: ask for none)."""
        with self._lock:
            self._acl_token = token

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status` and an error body."""
        with self._lock:
            self._failures_left = count
            self._failure_status = status

    def set_delay(self, seconds: float) -> None:
        """Hold every request this long before handling it (0 to stop)."""
        with self._lock:
            self._delay = seconds

    @property
    def requests(self) -> list[ConsulRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def blocked_queries(self) -> int:
        """Blocking queries parked right now, waiting for a change."""
        with self._lock:
            return self._blocked

    def wait_for_blocked_queries(self, count: int = 1, timeout: float = 10.0) -> None:
        """Return once `count` blocking queries are parked: a change made after this wakes
        them, rather than being seen by a query that had not started yet."""
        deadline = time.monotonic() + timeout
        while self.blocked_queries < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.blocked_queries} of {count} blocking queries parked")
            time.sleep(0.005)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on our port; the first start picks a free one."""
        if self._httpd is not None:
            return
        self._httpd = _HTTPServer((self.host, self.port), _handler_for(self))
        self.port = self._httpd.server_address[1]
        self._down.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"consul-stand-in-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and drop every open connection, parked queries included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._down.set()
        self.store.wake_all()
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def restart(self, keep_data: bool = True) -> None:
        """Stop and start on the same port; without keep_data, as a server that lost its
        state (indexes start over, so a client's index goes backwards)."""
        self.stop()
        if not keep_data:
            self.store.clear()
        self.start()

    @property
    def running(self) -> bool:
        return self._httpd is not None


    # -- request handling (called from handler threads) ------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        with self._lock:
            delay, token_needed = self._delay, self._acl_token
        if delay and self._down.wait(delay):
            raise _Aborted
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                return _Reply(self._failure_status, b"injected failure", "text/plain")
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if token_needed is not None:
            denied = self._check_token(token_needed, _token_of(headers, query), url.path)
            if denied is not None:
                return denied
        if url.path == "/v1/status/leader" and method == "GET":
            return _Reply(200, json.dumps(f"{LOOPBACK}:8300").encode())
        if not url.path.startswith(KV_PREFIX):
            return _Reply(404, b"404 page not found\n", "text/plain")
        key = unquote(url.path[len(KV_PREFIX) :])
        if method == "GET":
            return self._kv_get(key, query)
        if method == "PUT":
            return self._kv_put(key, query, body)
        if method == "DELETE":
            return self._kv_delete(key, query)
        return _Reply(405, b"method not allowed", "text/plain")

    def _check_token(self, wanted: str, given: str | None, path: str) -> _Reply | None:
        if given == wanted:
            return None
        if given:
            return _Reply(403, b"ACL not found", "text/plain")
        what = "key:read" if path.startswith(KV_PREFIX) else "operator:read"
        message = (
            f"Permission denied: token with AccessorID '{ANONYMOUS_ACCESSOR}' lacks "
            f"permission '{what}' on \"{unquote(path.removeprefix(KV_PREFIX))}\""
        )
        return _Reply(403, message.encode(), "text/plain")

    def _kv_get(self, key: str, query: dict[str, str]) -> _Reply:
        try:
            min_index = int(query.get("index", "0") or 0)
            wait = (
                min(parse_go_duration(query["wait"]), MAX_WAIT) if "wait" in query else DEFAULT_WAIT
            )
        except ValueError:
            return _Reply(400, b"Invalid wait time or index", "text/plain")
        listing = "recurse" in query or "keys" in query
        if listing:
            index, found = self._blocking(lambda: self.store.list(key), min_index, wait)
        else:
            index, found = self._blocking(lambda: self.store.get(key), min_index, wait)
        entries: list[KVEntry] = found if isinstance(found, list) else [found] if found else []
        if not entries:
            return _Reply(404, index=index)
        if "keys" in query:
            names = _key_names(entries, key, query.get("separator", ""))
            return _Reply(200, json.dumps(names).encode(), index=index)
        if "raw" in query and not listing:
            return _Reply(200, entries[0].value, "text/plain; charset=utf-8", index=index)
        document = [e.to_json() for e in entries]
        return _Reply(200, json.dumps(document).encode(), index=index)

    def _blocking(self, query: _Query, min_index: int, wait: float) -> tuple[int, _Result]:
        if min_index == 0:
            return query()
        with self._lock:
            self._blocked += 1
        try:
            result = self.store.wait(query, min_index, wait, abandoned=self._down.is_set)
        finally:
            with self._lock:
                self._blocked -= 1
        if result is None:
            raise _Aborted
        return result

    def _kv_put(self, key: str, query: dict[str, str], body: bytes) -> _Reply:
        if not key:
            return _Reply(400, b"Missing key name", "text/plain")
        if len(body) > MAX_VALUE_SIZE:
            message = f"Request body(value) too large, max size: {MAX_VALUE_SIZE} bytes."
            return _Reply(413, message.encode(), "text/plain")
        try:
            flags = int(query.get("flags", "0") or 0)
            cas = int(query["cas"]) if "cas" in query else None
        except ValueError:
            return _Reply(400, b"Invalid flags or cas", "text/plain")
        done = self.store.put(key, body, flags, cas)
        return _Reply(200, json.dumps(done).encode())

    def _kv_delete(self, key: str, query: dict[str, str]) -> _Reply:
        try:
            cas = int(query["cas"]) if "cas" in query else None
        except ValueError:
            return _Reply(400, b"Invalid cas", "text/plain")
        done = self.store.delete(key, recurse="recurse" in query, cas=cas)
        return _Reply(200, json.dumps(done).encode())

    def _record(self, request: ConsulRequest) -> None:
        with self._lock:
            self._log.append(request)


def _token_of(headers: dict[str, str], query: dict[str, str]) -> str | None:
    if headers.get("x-consul-token"):
        return headers["x-consul-token"]
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return query.get("token") or None


def _key_names(entries: list[KVEntry], prefix: str, separator: str) -> list[str]:
    """?keys: the names under the prefix, cut after the first separator past it."""
    names: list[str] = []
    for entry in entries:
        name = entry.key
        if separator:
            cut = name.find(separator, len(prefix))
            if cut != -1:
                name = name[: cut + len(separator)]
        if not names or names[-1] != name:
            names.append(name)
    return names


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # dropped connections are what stop() is for; nothing to report


def _handler_for(server: ConsulServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as clients' connection pools expect
        # Headers and body go out in two writes; with Nagle on, a kept-alive connection
        # waits for the client's delayed ACK (~40 ms) between them.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            started = time.monotonic()
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self._read_body(headers)
            try:
                reply = server._handle(self.command, self.path, headers, body)
            except _Aborted:
                self.close_connection = True
                return
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            # Logged before the answer leaves, so that a client holding the answer finds
            # its request in the log.
            server._record(
                ConsulRequest(
                    method=self.command,
                    path=unquote(url.path),
                    query=query,
                    token=_token_of(headers, query),
                    status=reply.status,
                    started=started,
                    finished=time.monotonic(),
                )
            )
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.index is not None:
                self.send_header("X-Consul-Index", str(reply.index))
                self.send_header("X-Consul-Knownleader", "true")
                self.send_header("X-Consul-Lastcontact", "0")
            self.end_headers()
            self.wfile.write(reply.body)

        def _read_body(self, headers: dict[str, str]) -> bytes:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(headers.get("content-length", "0") or 0)
            return self.rfile.read(length) if length else b""

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log is for tests; stderr stays quiet

    return Handler
