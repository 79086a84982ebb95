"""What the Vault and Consul fault proxies share: an HTTP/1.1 server on loopback that knows
its open connections, so that stopping it cuts them as a host going away would."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authorization", "proxy-authenticate", "host",
                        "content-length"})


class TrackingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 proxy: Any) -> None:
        self.proxy = proxy
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client or stop() cut the connection: nothing to report

    def close_all(self) -> None:
        """Stop listening and cut every open connection (parked requests included)."""
        self.shutdown()
        self.server_close()
        with self.open_lock:
            for conn in list(self.open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class TrackingHandler(BaseHTTPRequestHandler):
    server: TrackingServer
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        """The upstream's (or a fault's) answer, without its hop-by-hop headers."""
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
