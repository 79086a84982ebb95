"""What the running entrypoint has done, folded from its structured log events.

Every component already logs what it does, with the facts as fields (``extra=``: event
name, source key, lease short id, ttl, pid, exit code, delay, reason). Rather than a
second set of calls beside every log line, :class:`Observer` listens to those records
(a logging handler) and keeps counters and the latest facts for ``entrypoint status``
and ``/metrics``. Scraping or asking reads this memory only: it never makes a request.

Vault requests are counted by a hook of the Vault transport
(:func:`vault_response`), which costs nothing while no observer is installed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Seconds; the latency buckets of Vault requests (a local Vault answers in ~1 ms, a
# remote one behind a load balancer in tens, a struggling one in seconds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def short_lease_id(lease_id: str | None) -> str | None:
    """An accessor-like handle for a lease: never the lease id itself (with a token, a
    lease id lets one renew or revoke), but stable, so that log lines and ``status``
    about one lease can be matched: ``printf %s LEASE_ID | sha256sum | cut -c1-12``."""
    if not lease_id:
        return None
    import hashlib  # here: it loads OpenSSL's libcrypto (~3 MB resident), needed for leases

    return hashlib.sha256(lease_id.encode()).hexdigest()[:12]


def endpoint_class(url: str) -> str:
    """A bounded label for a Vault API path: never the path itself (which names secrets
    and would make one time series per path)."""
    path = urlsplit(url).path.removeprefix("/v1/")
    if path.startswith("auth/token/"):
        return "token"
    if path.startswith("auth/"):
        return "login"
    if path.startswith("sys/leases/"):
        return "lease"
    if path.startswith("sys/"):
        return "sys"
    return "secret"


@dataclass
class KeyFacts:
    """The last facts events gave about one source key."""

    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1


class Observer(logging.Handler):
    """Counters and latest facts, updated from log records that carry an ``event``."""

    def __init__(self, clock: Any = time.time) -> None:
        super().__init__(level=logging.DEBUG)
        self.clock = clock
        self.guard = threading.Lock()  # Handler.lock is taken by handle(), not by us
        self.started_at = clock()
        self.renewals: dict[tuple[str, str], int] = defaultdict(int)  # (kind, outcome)
        self.replacements: dict[tuple[str, str], int] = defaultdict(int)
        self.failures: dict[str, int] = defaultdict(int)  # kind
        self.signals: dict[str, int] = defaultdict(int)  # signal name
        self.requests: dict[tuple[str, str], Histogram] = defaultdict(Histogram)
        self.keys: dict[str, KeyFacts] = defaultdict(KeyFacts)
        self.app_pid: int | None = None
        self.app_started_at: float | None = None
        self.app_starts = 0
        self.last_exit_code: int | None = None
        self.last_action: str | None = None
        self.last_action_reason: str | None = None
        self.last_action_at: float | None = None
        self.last_refresh_at: float | None = None  # last successful resolution
        self.ready = False
        self.live = True  # /live: the listener answers while the process runs

    # -- events ---------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if not isinstance(event, str):
            return
        fields = vars(record)
        with self.guard:
            self._fold(event, fields, record.created)

    def _fold(self, event: str, f: dict[str, Any], now: float) -> None:
        kind = str(f.get("kind") or "unknown")
        outcome = str(f.get("outcome") or "ok")
        key = f.get("key")
        facts = self.keys[str(key)] if key else None
        if outcome != "ok" and facts is not None:
            facts.last_error, facts.last_error_at = str(f.get("error") or event), now
        elif facts is not None:
            facts.last_ok_at = now
        if event == "lease_renew":
            self.renewals[(kind, outcome)] += 1
        elif event == "lease_replace":
            self.replacements[(kind, outcome)] += 1
        elif event == "refresh":
            if outcome == "ok":
                self.last_refresh_at = now
        elif event == "poll" and outcome == "ok":
            self.last_refresh_at = now
        elif event == "child_started":
            self.app_pid, self.app_started_at = f.get("pid"), now
            self.app_starts += 1
        elif event == "child_exited":
            self.last_exit_code = f.get("exit_code")
        elif event in ("restart", "signal", "command", "stop"):
            # What the entrypoint decided to do to the app, and why.
            self.last_action, self.last_action_reason = event, f.get("reason")
            self.last_action_at = now
        if event in ("signal", "signal_forwarded") and f.get("signal"):
            self.signals[str(f["signal"])] += 1
        if outcome != "ok":
            self.failures[kind] += 1

    def vault_request(self, endpoint: str, status: str, seconds: float) -> None:
        with self.guard:
            self.requests[(endpoint, status)].observe(seconds)

    @property
    def restarts(self) -> int:
        return max(0, self.app_starts - 1)


_observer: Observer | None = None


def install(logger: logging.Logger) -> Observer:
    """Start folding ``logger``'s events (a fresh observer per resident run)."""
    global _observer
    if _observer is not None:
        logger.removeHandler(_observer)
    _observer = Observer()
    logger.addHandler(_observer)
    return _observer


def current() -> Observer | None:
    return _observer


def vault_response(path: str, status: int, seconds: float) -> None:
    """The Vault transport's hook: one count and one latency per request."""
    observer = _observer
    if observer is None:
        return
    observer.vault_request(endpoint_class(path), str(status), seconds)
