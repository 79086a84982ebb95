"""Fault controls: failures, rate limiting and delays a test asks for, and the request log.

Faults hit /v1/ requests only (never the /_test/ control paths), in the order the requests
arrive. A `path_prefix` limits a fault to requests whose Vault path (without /v1/) starts
with it, so a test can break, say, only sys/leases/renew.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from email.utils import formatdate
from typing import Any

from tests.vaultserver.wire import Response

# vault/quotas defaultExemptPaths: rate limiting never applies to these.
RATE_LIMIT_EXEMPT = ("sys/health", "sys/seal-status", "sys/unseal", "sys/generate-root/",
                     "sys/generate-recovery-token/")
DEFAULT_MESSAGES = {
    500: "internal error",
    502: "upstream rate limited",
    503: "Vault is sealed",
}


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server answered it."""

    method: str
    path: str  # Vault path without /v1/ and without the query string
    status: int
    accessor: str | None  # accessor of a known token, else None
    timestamp: float  # time.time() when the answer was ready (logged just before sending)
    query: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Fault:
    kind: str  # "fail" | "rate_limit" | "delay"
    remaining: int | None  # None = until cleared
    path_prefix: str | None
    status: int = 500
    message: str = ""
    retry_after: float = 1.0
    http_date: bool = True
    seconds: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self.log: list[LoggedRequest] = []

    def fail_next(
        self, count: int, status: int = 500, message: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        text = message if message is not None else DEFAULT_MESSAGES.get(status, "internal error")
        with self._lock:
            self._faults.append(_Fault("fail", count, path_prefix, status=status, message=text))

    def rate_limit_next(
        self, count: int, retry_after: float = 1.0, http_date: bool = True,
        path_prefix: str | None = None,
    ) -> None:
        with self._lock:
            self._faults.append(
                _Fault("rate_limit", count, path_prefix, retry_after=retry_after,
                       http_date=http_date)
            )

    def set_delay(
        self, seconds: float, count: int | None = None, path_prefix: str | None = None
    ) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.kind != "delay"]
            if seconds > 0:
                self._faults.append(_Fault("delay", count, path_prefix, seconds=seconds))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> tuple[float, Response | None]:
        """(delay before answering, forced answer or None) for a request to `path`."""
        delay = 0.0
        forced: Response | None = None
        with self._lock:
            for fault in list(self._faults):
                if fault.path_prefix is not None and not path.startswith(fault.path_prefix):
                    continue
                if fault.kind == "rate_limit" and path.startswith(RATE_LIMIT_EXEMPT):
                    continue
                if fault.kind == "delay":
                    delay = fault.seconds
                elif forced is None:
                    forced = self._answer(fault, path)
                else:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return delay, forced

    @staticmethod
    def _answer(fault: _Fault, path: str) -> Response:
        if fault.kind == "fail":
            return Response(fault.status, {"errors": [fault.message]})
        reset = time.time() + fault.retry_after
        # go-limiter's httplimit writes Retry-After as an RFC1123 date (Go prints "UTC").
        retry = (formatdate(reset, usegmt=True).replace("GMT", "UTC") if fault.http_date
                 else str(max(0, round(fault.retry_after))))
        return Response(
            429,
            {"errors": [f'request path "{path}": rate limit quota exceeded']},
            {"Retry-After": retry, "X-Ratelimit-Limit": "1", "X-Ratelimit-Remaining": "0",
             "X-Ratelimit-Reset": formatdate(reset, usegmt=True).replace("GMT", "UTC")},
        )

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)

    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self.log)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()


class FaultControls:
    """The fault and request-log methods of a server that keeps a `Faults` as `.faults`:
    the stand-in and the fault proxy in front of the real Vault offer the same ones."""

    faults: Faults

    def fail_next(self, count: int, status: int = 500, message: str | None = None,
                  path_prefix: str | None = None) -> None:
        self.faults.fail_next(count, status, message, path_prefix)

    def rate_limit_next(self, count: int, retry_after: float = 1.0, http_date: bool = True,
                        path_prefix: str | None = None) -> None:
        self.faults.rate_limit_next(count, retry_after, http_date, path_prefix)

    def set_delay(self, seconds: float, count: int | None = None,
                  path_prefix: str | None = None) -> None:
        self.faults.set_delay(seconds, count, path_prefix)

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.faults.requests()

    def count(self, path: str, method: str | None = None) -> int:
        """How many requests went to Vault path `path` (no /v1/), optionally by method."""
        return sum(1 for r in self.requests
                   if r.path == path and (method is None or r.method == method))

    def clear_requests(self) -> None:
        self.faults.clear_log()
