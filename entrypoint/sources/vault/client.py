"""One connection to Vault: hvac clients over a shared session, and the start-up retry loop.

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
from entrypoint.sources.vault.connection import REQUEST_TIMEOUT, Connection

T = TypeVar("T")


def _adapter_class() -> Any:
    from hvac.adapters import JSONAdapter

    class Adapter(JSONAdapter):  # type: ignore[misc]
        """hvac's exceptions drop the response headers; keep Retry-After for 429s."""

        def _raise_for_error(self, method: str, url: str, response: Any) -> None:
            try:
                super()._raise_for_error(method, url, response)
            except Exception as exc:
                exc.retry_after = response.headers.get("Retry-After")  # type: ignore[attr-defined]
                exc.status = response.status_code  # type: ignore[attr-defined]
                raise

    return Adapter


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth retrying ("sealed", "HTTP 429", ...), or None when it is not."""
    import hvac.exceptions as hx
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return None  # a certificate problem does not fix itself: fail at once
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        from entrypoint.describe import transport_reason

        return f"unreachable ({transport_reason(exc)})"
    if isinstance(exc, hx.VaultDown):
        return "sealed" if "sealed" in str(exc).lower() else "unavailable (HTTP 503)"
    if isinstance(exc, hx.RateLimitExceeded):
        return "rate limited (HTTP 429)"
    if isinstance(exc, hx.InternalServerError | hx.BadGateway) or (
            isinstance(exc, hx.UnexpectedError) and getattr(exc, "status", 0) >= 500):
        # Vault's own words say what broke (a storage backend, a plugin): keep them.
        return f"server error (HTTP {getattr(exc, 'status', '5xx')}: {vault_message(exc)})"
    return None


def vault_message(exc: BaseException) -> str:
    """The server's own words, without hvac's ", on GET http://..." suffix."""
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


class VaultClient:
    """hvac clients for one Vault, plus the retry policy shared by every call."""

    def __init__(self, connection: Connection, *, startup_timeout: float,
                 log: logging.Logger, pool_size: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        import hvac

        self.connection = connection
        self.log = log
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rng = rng
        self.startup_timeout = startup_timeout
        self.deadline = clock() + startup_timeout
        self.session = connection.session(pool_size)
        from entrypoint.ops.state import vault_response

        # Counts and times every request for /metrics; a no-op unless metrics are on.
        self.session.hooks["response"].append(vault_response)
        adapter = _adapter_class()
        common: dict[str, Any] = dict(
            url=connection.url, verify=connection.verify, cert=connection.client_cert,
            timeout=REQUEST_TIMEOUT, session=self.session, namespace=connection.namespace,
            adapter=adapter)
        # token="" stops hvac from falling back to VAULT_TOKEN or ~/.vault-token itself:
        # which token is used is the auth method's decision alone.
        self.hvac = hvac.Client(token="", **common)
        # Logins go through a client that never carries a token: a stale token must not
        # be sent along with credentials for a new one.
        self.anonymous = hvac.Client(token="", **common)

    @property
    def token(self) -> str:
        return str(self.hvac.token or "")

    def set_token(self, token: str) -> None:
        self.hvac.token = token

    def end_startup(self) -> None:
        """From now on fail at once (shutdown must not wait out the start-up window)."""
        self.deadline = self.clock()

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
        self.session.close()
