"""A fault proxy in front of a real Consul agent: the faults a real agent cannot give on
demand, a 5xx answer and latency. Everything else is forwarded unchanged, so the answers
the entrypoint acts on are Consul's own; the proxy logs each request with the status it
answered and the token it carried. Attributes it does not have (put, delete, create_token,
wait_for_blocked_queries...) are the agent's.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.realservers.consul_agent import ConsulAgent
from tests.realservers.proxy_base import HOP_BY_HOP, TrackingHandler, TrackingServer
from tests.services.ports import LOOPBACK

# What a Consul agent answers when its servers have no leader (agent/consul/rpc.go).
NO_LEADER = b"rpc error making call: No cluster leader"
UPSTREAM_TIMEOUT = 700.0  # longer than Consul's longest blocking query (600 s + wait/16)


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    query: dict[str, str]
    token: str | None
    status: int
    started: float  # time.monotonic()
    finished: float


class _Handler(TrackingHandler):
    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_GET

    def _serve(self) -> None:
        proxy = self.server.proxy
        started = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        delay, status = proxy._take_fault()
        if delay and proxy._stopped.wait(delay):
            self.close_connection = True
            return
        if status is not None:
            headers, payload = {"Content-Type": "text/plain; charset=utf-8"}, NO_LEADER
        else:
            try:
                status, headers, payload = proxy._forward(self.command, self.path,
                                                          dict(self.headers), body)
            except OSError:
                self.close_connection = True  # the agent went away: so does our answer
                return
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        proxy._record(ProxiedRequest(self.command, unquote(split.path), query,
                                     self.headers.get("X-Consul-Token"), status, started,
                                     time.monotonic()))
        self.send_answer(status, headers, payload)


class ConsulFaultProxy:
    def __init__(self, agent: ConsulAgent) -> None:
        self.agent = agent
        self.port = 0
        self._httpd: TrackingServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failures: tuple[int, int] = (0, 500)
        self._delay = 0.0
        self._log: list[ProxiedRequest] = []
        self._stopped = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    @property
    def addr(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {"CONSUL_HTTP_ADDR": self.addr}
        if token is not None:
            env["CONSUL_HTTP_TOKEN"] = token
        return env

    # -- life cycle: stop/start keep the port, as an agent going away and back -------------

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = TrackingServer((LOOPBACK, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._stopped.clear()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"consul-proxy-{self.port}")
        self._thread.start()

    def stop(self) -> None:
        """Refuse connections and cut the open ones (parked queries included)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopped.set()
        httpd.close_all()
        if self._thread is not None:
            self._thread.join(5)

    # -- faults ----------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status` and a leaderless agent's text."""
        with self._lock:
            self._failures = (count, status)

    def set_delay(self, seconds: float) -> None:
        """Hold every request this long before forwarding it (0 to stop)."""
        with self._lock:
            self._delay = seconds

    def _take_fault(self) -> tuple[float, int | None]:
        with self._lock:
            count, status = self._failures
            if count > 0:
                self._failures = (count - 1, status)
                return self._delay, status
            return self._delay, None

    # -- forwarding and the log -------------------------------------------------------------

    def _forward(self, method: str, target: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, self.agent.port, timeout=UPSTREAM_TIMEOUT)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, target, body=body or None, headers=sent)
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def requests(self) -> list[ProxiedRequest]:
        """What the proxy answered, oldest first."""
        with self._lock:
            return list(self._log)
