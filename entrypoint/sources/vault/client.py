"""One connection to Vault: the API with and without our token, and the start-up retry loop.

Transient failures (unreachable, sealed, 429, 5xx) are retried with capped exponential
backoff and full jitter until ``startup_timeout`` after this client was made; past that
point a failure is raised at once as :class:`UnavailableError` and whoever called (the
rotation engine) keeps its own schedule. Everything else is left to the caller, which
knows the path concerned and says so in the error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from entrypoint import backoff
from entrypoint.errors import UnavailableError
from entrypoint.sources.vault.connection import REQUEST_TIMEOUT, USER_AGENT, Connection
from entrypoint.sources.vault.transport import Transport

T = TypeVar("T")
# Idle connections kept after start-up: the engine's thread and the token keeper's.
STEADY_CONNECTIONS = 2


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth retrying ("sealed", "HTTP 429", ...), or None when it is not."""
    from entrypoint.sources.vault import answers as a

    if isinstance(exc, a.TLSError):
        return None  # a certificate problem does not fix itself: fail at once
    if isinstance(exc, a.TransportError):
        from entrypoint.describe import transport_reason

        return f"unreachable ({transport_reason(exc)})"
    if isinstance(exc, a.VaultDown):
        return "sealed" if "sealed" in str(exc).lower() else "unavailable (HTTP 503)"
    if isinstance(exc, a.RateLimitExceeded):
        return "rate limited (HTTP 429)"
    if isinstance(exc, a.VaultError) and exc.status >= 500 and not isinstance(
            exc, a.VaultNotInitialized):
        # Vault's own words say what broke (a storage backend, a plugin): keep them.
        return f"server error (HTTP {exc.status}: {vault_message(exc)})"
    return None


def vault_message(exc: BaseException) -> str:
    """The server's own words: its ``errors``, each on one line."""
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(" ".join(str(e).replace("\n\t* ", " ").split()) for e in errors)
    args = getattr(exc, "args", ())
    text = str(args[0]) if args and args[0] else "no message"
    return " ".join(text.split())[:300]


def token_is_invalid(exc: BaseException) -> bool:
    """A 403 for a token Vault does not know (expired, revoked, another Vault's): Vault adds
    "invalid token" to "permission denied"; a valid token refused by its policies gets only
    the latter."""
    return "invalid token" in vault_message(exc)


class Api:
    """Vault's HTTP API with one kind of token: the client's current one, or none."""

    def __init__(self, transport: Transport, token: Callable[[], str]) -> None:
        self.transport = transport
        self._token = token

    def get(self, path: str, *, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Any:
        return self.transport.request("GET", path, token=self._token(), params=params,
                                      headers=headers)

    def list(self, path: str) -> Any:
        return self.transport.request("LIST", path, token=self._token())

    def post(self, path: str, body: dict[str, Any] | None = None, *,
             headers: dict[str, str] | None = None) -> Any:
        return self.transport.request("POST", path, token=self._token(), body=body,
                                      headers=headers)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.transport.request("PUT", path, token=self._token(), body=body)


class VaultClient:
    """The API for one Vault, plus the retry policy shared by every call."""

    def __init__(self, connection: Connection, *, startup_timeout: float,
                 log: logging.Logger, pool_size: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        from entrypoint.ops.state import vault_response

        self.connection = connection
        self.log = log
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rng = rng
        self.startup_timeout = startup_timeout
        self.deadline = clock() + startup_timeout
        # Counts and times every request for /metrics; a no-op unless metrics are on.
        self.transport = Transport(connection, timeout=REQUEST_TIMEOUT, user_agent=USER_AGENT,
                                   pool_size=pool_size, on_response=vault_response)
        self._token = ""
        self.api = Api(self.transport, lambda: self._token)
        # Logins go through an API that never carries a token: a stale token must not
        # be sent along with credentials for a new one.
        self.anonymous = Api(self.transport, str)

    @property
    def token(self) -> str:
        return self._token

    def set_token(self, token: str) -> None:
        self._token = token

    def end_startup(self) -> None:
        """From now on fail at once (shutdown must not wait out the start-up window).
        The connections opened for the start's parallel reads are closed but two: the
        renewals, lookups and polls that follow are one or two at a time, and a fleet's
        idle connections are Vault's to keep open (eight per container otherwise)."""
        self.deadline = self.clock()
        self.transport.trim(STEADY_CONNECTIONS)

    def in_startup(self) -> bool:
        return self.clock() < self.deadline

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient failures while within the start-up window."""
        started = self.clock()
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                reason = transient_reason(exc)
                if reason is None:
                    raise
                attempt += 1
                now = self.clock()
                retry_after = backoff.parse_retry_after(getattr(exc, "retry_after", None),
                                                        self.wall())
                delay = backoff.startup_delay(attempt, retry_after, self.rng)
                if now + delay > self.deadline:
                    raise self._gave_up(what, reason, attempt, now - started,
                                        retry_after) from None
                self.log.warning("vault: %s: %s; retry %d in %.2fs%s", what, reason, attempt,
                                 delay, " (Retry-After)" if retry_after is not None else "",
                                 extra={"attempt": attempt, "delay": round(delay, 3)})
                self.sleep(delay)

    def _gave_up(self, what: str, reason: str, attempts: int, elapsed: float,
                 retry_after: float | None) -> UnavailableError:
        where = f"Vault at {self.connection.addr}"
        if attempts == 1 and not self.in_startup():
            return UnavailableError(f"{where}: {what}: {reason}")
        detail = (f"; it asked to retry after {retry_after:g}s, past the deadline"
                  if retry_after is not None else "")
        return UnavailableError(
            f"{where}: {what}: {reason} after {attempts} attempt(s) over {elapsed:.1f}s"
            f"{detail}",
            hint=f"gave up at startup_timeout ({self.startup_timeout:g}s); check VAULT_ADDR, "
                 "that Vault is unsealed and reachable from here")

    def close(self) -> None:
        self.transport.close()
