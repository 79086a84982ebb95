"""A fault proxy in front of a real Vault: the faults a real server cannot give on demand.

5xx and 429 answers (with `Retry-After`), latency, dropped connections (stop/start on the
same port: connection refused, open connections cut), and a standby's 307 to another
address. Everything else is forwarded unchanged to the real server, so the answers the
entrypoint acts on are Vault's own. The proxy keeps its own request log with the real
status of each answer. Any attribute it does not have (setup helpers, `seal`, `leases`...)
is the real server's.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.realservers.proxy_base import HOP_BY_HOP, TrackingHandler, TrackingServer
from tests.vaultserver.faults import FaultControls, Faults, LoggedRequest
from tests.vaultserver.wire import Response


class _Handler(TrackingHandler):
    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_LIST = do_PATCH = do_HEAD = do_GET

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        path = unquote(split.path[len("/v1/"):]) if split.path.startswith("/v1/") else ""
        delay, forced = proxy.faults.take(path)
        if delay:
            time.sleep(delay)
        redirect = proxy.take_redirect()
        if forced is not None:
            status, headers, payload = self._forced(forced)
        elif redirect is not None:
            status, headers, payload = 307, {"Location": redirect + self.path}, b""
        else:
            status, headers, payload = proxy.forward(self.command, self.path,
                                                     dict(self.headers), body)
        proxy.faults.record(LoggedRequest(self.command, path, status,
                                          proxy.accessor(self.headers.get("X-Vault-Token")),
                                          time.time(), split.query))
        self.send_answer(status, headers, payload)

    @staticmethod
    def _forced(response: Response) -> tuple[int, dict[str, str], bytes]:
        import json

        payload = json.dumps(response.body).encode() if response.body is not None else b""
        return response.status, {"Content-Type": "application/json", **response.headers}, payload


class FaultProxy(FaultControls):
    def __init__(self, vault: Any) -> None:
        self.vault = vault
        self.faults = Faults()
        self.port = 0
        self._httpd: TrackingServer | None = None
        self._thread: threading.Thread | None = None
        self._redirect: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._accessors: dict[str, str | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vault, name)

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle: stop/start keep the port, as a Vault host going away and back ----------

    def start(self) -> None:
        if self._httpd is not None:
            return
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._httpd = TrackingServer(("127.0.0.1", self.port), _Handler, self)
                break
            except OSError:
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old socket is still closing; retry until the deadline
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.close_all()
        if self._thread is not None:
            self._thread.join(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    close = stop

    # -- faults ---------------------------------------------------------------------------

    def redirect_next(self, count: int, to: str) -> None:
        """Answer the next `count` requests with a standby's 307 to `to` (an address)."""
        with self._lock:
            self._redirect = (to.rstrip("/"), count)

    def take_redirect(self) -> str | None:
        with self._lock:
            if self._redirect is None:
                return None
            to, left = self._redirect
            self._redirect = (to, left - 1) if left > 1 else None
            return to

    def clear_faults(self) -> None:
        self.faults.clear()
        with self._lock:
            self._redirect = None

    # -- forwarding and the log -------------------------------------------------------------

    def forward(self, method: str, target: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        upstream = urlsplit(self.vault.addr)
        conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port,
                                          timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, target, body=body or None, headers=sent)
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def accessor(self, token: str | None) -> str | None:
        """The accessor of a token a request carried (asked of Vault once per token)."""
        if not token:
            return None
        with self._lock:
            if token in self._accessors:
                return self._accessors[token]
        try:
            found: str | None = self.vault.token_accessor(token)
        except Exception:  # revoked or never valid: the log says None, as the stand-in did
            found = None
        with self._lock:
            self._accessors[token] = found
        return found
