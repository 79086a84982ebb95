"""``metrics_listen``: Prometheus ``/metrics``, plus ``/ready`` and ``/live``.

Imported only when ``metrics_listen`` is set. Every metric is computed at scrape time
from memory (:mod:`entrypoint.commands.status` and the observer's counters): a scrape never
makes a request to Vault or any other server. The format is written by
:mod:`entrypoint.ops.exposition` (why not prometheus_client: its memory, see there), and
the HTTP side is the least HTTP/1.0 a scraper or a probe needs, by hand (``http.server``
would load ``http.client`` and ``ssl``): a GET of a path, one answer, the connection
closed. Served as the control socket is (:mod:`entrypoint.ops.connections`): one thread
for every connection, each with one :data:`DEADLINE` for its request and its answer, at
most :data:`MAX_PENDING` held at once, a request read up to :data:`MAX_REQUEST` bytes.
It was a thread per connection with a 5 s timeout per read: a client sending a byte every
4 s held one thread each, and a few hundred took the entrypoint from 7 threads and 20 MB
to 547 threads and 44 MB in 35 s.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.ops.connections import Pending, RequestServer
from entrypoint.ops.exposition import CONTENT_TYPE, Family, render
from entrypoint.ops.state import BUCKETS, Observer

Snapshot = Callable[[], dict[str, Any]]
MAX_REQUEST = 8192  # bytes of request line and headers; a scraper sends a few hundred
DEADLINE = 5.0  # seconds a client has for its whole request and its whole answer
MAX_PENDING = 16  # connections held at once; the oldest makes room (a scraper sends at once)
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


def parse_listen(text: str, origin: str = "metrics_listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9102`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        if host:
            ipaddress.ip_address(host)
    except ValueError:
        number = -1
    if not sep or not host or not 0 <= number <= 65535:
        raise ConfigError(f"{origin}: expected HOST:PORT with an IP address, e.g. "
                          f"127.0.0.1:9102, got {text!r}")
    return host, number


def families(observer: Observer, snap: dict[str, Any]) -> Iterator[Family]:
    """Every family, from the status snapshot and the observer's counters."""
    ttl = Family("entrypoint_lease_ttl_seconds",
                 "Seconds left on each held lease or static credential", "gauge")
    for k in snap["keys"]:
        if k["ttl"] is not None:
            ttl.add(k["ttl"], [("key", k["key"]), ("kind", k["kind"])])
    yield ttl
    token = Family("entrypoint_vault_token_ttl_seconds",
                   "Seconds left on the Vault token (absent: no token, or no expiry)", "gauge")
    auth = snap.get("auth") or {}
    if auth.get("token_ttl") is not None:
        token.add(auth["token_ttl"])
    yield token
    o = observer
    with o.guard:
        renewals, replacements = dict(o.renewals), dict(o.replacements)
        failures, signals = dict(o.failures), dict(o.signals)
        requests = {k: (list(h.counts), h.total, h.sum) for k, h in o.requests.items()}
        restarts, refreshed, ready = o.restarts, o.last_refresh_at, o.ready
    for name, doc, data in (
            ("entrypoint_lease_renewals", "Lease renewals by kind and outcome", renewals),
            ("entrypoint_replacements", "Fresh reads of a changed, ending or revoked "
             "secret by kind and outcome", replacements)):
        family = Family(name, doc, "counter")
        for (kind, outcome), value in sorted(data.items()):
            family.add(value, [("kind", kind), ("outcome", outcome)])
        yield family
    family = Family("entrypoint_failures",
                    "Failed renewals, re-reads and replacements by kind", "counter")
    for kind, value in sorted(failures.items()):
        family.add(value, [("kind", kind)])
    yield family
    hist = Family("entrypoint_vault_request_duration_seconds",
                  "Vault requests by endpoint class and HTTP status", "histogram")
    for (endpoint, status), (counts, total, seconds) in sorted(requests.items()):
        hist.add_histogram([("endpoint", endpoint), ("status", status)], BUCKETS, counts,
                           total, seconds)
    yield hist
    family = Family("entrypoint_app_restarts", "Restarts of the app", "counter")
    family.add(restarts)
    yield family
    family = Family("entrypoint_app_signals",
                    "Signals sent to the app (forwarded, or for a rotation)", "counter")
    for name, value in sorted(signals.items()):
        family.add(value, [("signal", name)])
    yield family
    last = Family("entrypoint_last_refresh_timestamp_seconds",
                  "Unix time of the last successful renewal or new values", "gauge")
    if refreshed is not None:
        last.add(refreshed)
    yield last
    family = Family("entrypoint_ready", "1 while the ready file would exist", "gauge")
    family.add(1.0 if ready else 0.0)
    yield family


def _answer(code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.0 {code} {REASONS[code]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class MetricsServer(RequestServer):
    label = "metrics"
    thread_name = "metrics"

    def __init__(self, listen: str, observer: Observer, snapshot: Snapshot,
                 log: logging.Logger, *, deadline: float | None = None) -> None:
        host, port = parse_listen(listen)
        self.observer = observer
        self.snapshot = snapshot
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            # A restarted container binds again at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(MAX_PENDING)
        except OSError as exc:
            sock.close()
            raise UnavailableError(f"cannot listen on metrics_listen {listen}: "
                                   f"{exc.strerror or exc}",
                                   hint="choose a free port, or leave metrics_listen empty"
                                   ) from None
        self.address = sock.getsockname()
        super().__init__(sock, log, max_request=MAX_REQUEST, max_pending=MAX_PENDING,
                         deadline=DEADLINE if deadline is None else deadline)

    def complete(self, received: bytes) -> bool:
        return b"\r\n\r\n" in received or b"\n\n" in received

    def answer(self, pending: Pending, received: bytes, ended: bool) -> bytes:
        parts = received.split(b"\n", 1)[0].decode("latin-1").split()
        if len(parts) < 2:
            return _answer(400, b"bad request\n")
        if parts[0] not in ("GET", "HEAD"):
            return _answer(405, b"only GET\n")
        code, body, ctype = self.route(parts[1].split("?", 1)[0])
        return _answer(code, b"" if parts[0] == "HEAD" else body, ctype)

    def route(self, path: str) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            return 200, render(families(self.observer, self.snapshot())), CONTENT_TYPE
        if path == "/ready":
            ready = self.observer.ready
            return (200, b"ready\n", text) if ready else (503, b"not ready\n", text)
        if path == "/live":
            live = self.observer.live
            return (200, b"live\n", text) if live else (503, b"stopping\n", text)
        return 404, b"not found: /metrics, /ready, /live\n", text

    def start(self) -> None:
        self.start_thread()
        self.log.info("metrics on http://%s:%d/metrics", *self.address[:2])
