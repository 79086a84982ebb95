"""``metrics_listen``: Prometheus ``/metrics``, plus ``/ready`` and ``/live``.

Imported only when ``metrics_listen`` is set: ``prometheus_client`` (the maintained
client, for the exposition format) is loaded by nobody else. Every metric is computed at
scrape time from memory (:mod:`entrypoint.ops.status` and the observer's counters): a
scrape never makes a request to Vault or any other server.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.ops.state import BUCKETS, Observer

Snapshot = Callable[[], dict[str, Any]]


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


class _Collector:
    """Builds every family at each scrape from the observer and the status snapshot."""

    def __init__(self, observer: Observer, snapshot: Snapshot) -> None:
        self.observer = observer
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        o = self.observer
        ttl = GaugeMetricFamily("entrypoint_lease_ttl_seconds",
                                "Seconds left on each held lease or static credential",
                                labels=["key", "kind"])
        for k in snap["keys"]:
            if k["ttl"] is not None:
                ttl.add_metric([k["key"], k["kind"]], k["ttl"])
        yield ttl
        token = GaugeMetricFamily("entrypoint_vault_token_ttl_seconds",
                                  "Seconds left on the Vault token (absent: none, or no expiry)")
        auth = snap.get("auth") or {}
        if auth.get("token_ttl") is not None:
            token.add_metric([], auth["token_ttl"])
        yield token
        with o.guard:
            renewals = dict(o.renewals)
            replacements = dict(o.replacements)
            failures = dict(o.failures)
            signals = dict(o.signals)
            requests = {k: (list(h.counts), h.total, h.sum) for k, h in o.requests.items()}
            restarts, refreshed, ready = o.restarts, o.last_refresh_at, o.ready
        for name, doc, data in (
                ("entrypoint_lease_renewals", "Lease renewals by kind and outcome", renewals),
                ("entrypoint_replacements",
                 "Fresh reads of a changed, ending or revoked secret by kind and outcome",
                 replacements)):
            family = CounterMetricFamily(name, doc, labels=["kind", "outcome"])
            for (kind, outcome), value in sorted(data.items()):
                family.add_metric([kind, outcome], value)
            yield family
        family = CounterMetricFamily("entrypoint_failures", "Failed renewals, re-reads and "
                                     "replacements by kind", labels=["kind"])
        for kind, value in sorted(failures.items()):
            family.add_metric([kind], value)
        yield family
        hist = HistogramMetricFamily("entrypoint_vault_request_duration_seconds",
                                     "Vault requests by endpoint class and HTTP status",
                                     labels=["endpoint", "status"])
        for (endpoint, status), (counts, total, seconds) in sorted(requests.items()):
            buckets = [(str(b), c) for b, c in zip(BUCKETS, counts, strict=True)]
            hist.add_metric([endpoint, status], [*buckets, ("+Inf", total)], seconds)
        yield hist
        yield CounterMetricFamily("entrypoint_app_restarts", "Restarts of the app",
                                  value=restarts)
        family = CounterMetricFamily("entrypoint_app_signals",
                                     "Signals sent to the app (forwarded or for a rotation)",
                                     labels=["signal"])
        for name, value in sorted(signals.items()):
            family.add_metric([name], value)
        yield family
        last = GaugeMetricFamily("entrypoint_last_refresh_timestamp_seconds",
                                 "Unix time of the last successful renewal or new values")
        if refreshed is not None:
            last.add_metric([], refreshed)
        yield last
        yield GaugeMetricFamily("entrypoint_ready", "1 while the ready file would exist",
                                value=1.0 if ready else 0.0)


class MetricsServer:
    def __init__(self, listen: str, observer: Observer, snapshot: Snapshot,
                 log: logging.Logger) -> None:
        host, port = parse_listen(listen)
        self.log = log
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(observer, snapshot))  # type: ignore[arg-type]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/ready":
                    ok = observer.ready
                    self._answer(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                elif path == "/live":
                    ok = observer.live
                    self._answer(200 if ok else 503, b"live\n" if ok else b"stopping\n")
                else:
                    self._answer(404, b"not found: /metrics, /ready, /live\n")

            def _answer(self, code: int, body: bytes,
                        ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape would drown the app's log

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a stuck scraper must not hold up the exit
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self.server = Server((host, port), Handler)
        except OSError as exc:
            raise UnavailableError(f"cannot listen on metrics_listen {listen}: "
                                   f"{exc.strerror or exc}",
                                   hint="choose a free port, or leave metrics_listen empty"
                                   ) from None
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics",
                                       kwargs={"poll_interval": 0.5}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.log.info("metrics on http://%s:%d/metrics", *self.address[:2])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
