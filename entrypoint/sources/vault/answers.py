"""What can come back from Vault besides an answer: its error statuses as exceptions, and
failures on the way to it (unreachable, TLS). Callers tell them apart by class.

The classes are named as Vault's own API client and hvac name them, so that a reader of
either finds the same cases here; ``errors`` holds Vault's messages, ``json`` its whole
error body (a KV v2 read of a deleted version says which version in ``data``).
"""

from __future__ import annotations

from typing import Any


class VaultError(Exception):
    """Vault answered with an error status."""

    def __init__(self, message: str, *, status: int = 0, errors: list[str] | None = None,
                 json: Any = None, retry_after: str | None = None, method: str = "",
                 path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []
        self.json = json
        self.retry_after = retry_after
        self.method = method
        self.path = path


class InvalidRequest(VaultError):
    """400"""


class Unauthorized(VaultError):
    """401"""


class Forbidden(VaultError):
    """403: permission denied, or a token Vault does not know."""


class InvalidPath(VaultError):
    """404"""


class PreconditionFailed(VaultError):
    """412: a performance standby has not caught up yet."""


class RateLimitExceeded(VaultError):
    """429"""


class InternalServerError(VaultError):
    """500"""


class VaultNotInitialized(VaultError):
    """501"""


class BadGateway(VaultError):
    """502"""


class VaultDown(VaultError):
    """503: sealed, or otherwise unavailable."""


class UnexpectedError(VaultError):
    """Any other status."""


BY_STATUS: dict[int, type[VaultError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: InvalidPath,
    412: PreconditionFailed, 429: RateLimitExceeded, 500: InternalServerError,
    501: VaultNotInitialized, 502: BadGateway, 503: VaultDown,
}


class TransportError(Exception):
    """No answer: refused, reset, timed out, name not found. The original ``OSError`` is
    the ``__cause__`` (describe.transport_reason reads it)."""


class TLSError(TransportError):
    """The TLS handshake failed (an untrusted certificate, a wrong name): not retried, a
    certificate does not fix itself."""


def error_for(status: int, method: str, path: str, decoded: Any, text: str,
              retry_after: str | None) -> VaultError:
    """The exception for an error answer; its message is Vault's ``errors``, else the
    body's first line. The path is kept apart, never in the message: it is the caller's
    to name (the request may carry a secret in its body, never in its path)."""
    errors = decoded.get("errors") if isinstance(decoded, dict) else None
    messages = [str(e) for e in errors] if isinstance(errors, list) else []
    message = "; ".join(messages) if messages else (
        text.strip().splitlines()[0][:300] if text.strip() else f"HTTP {status}")
    kind = BY_STATUS.get(status, UnexpectedError)
    return kind(message, status=status, errors=messages, json=decoded,
                retry_after=retry_after, method=method, path=path)
