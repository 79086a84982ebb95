"""The lease half of :class:`~entrypoint.sources.vault.source.VaultSource`: renew, revoke
and look up leases, and keep the list of those to give back at close.

A mixin, apart so that each file reads in one sitting; its methods use the source's
``_authed`` (login, start-up retries, 403 handling) like every other call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from entrypoint.errors import ConfigError, EntrypointError, LeaseGone, UnavailableError
from entrypoint.sources.base import Renewal

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient

T = TypeVar("T")
GONE = ("lease not found", "lease expired", "invalid lease", "lease is expired")
NOT_EXTENDABLE = ("not renewable", "past the max ttl")
# Vault's expiration manager when the secrets engine's own renew failed.
BACKEND_FAILED = "failed to renew entry"


class Refused(ConfigError):
    """A 400 from Vault, for the caller to interpret (lease calls) or report."""

    def __init__(self, what: str, path: str, text: str) -> None:
        super().__init__(f"vault:{path}: {what} refused: {text}")
        self.text = text


class LeaseKeeping:
    client: VaultClient
    log: logging.Logger
    revoke_on_close: bool
    _leases: set[str]
    _leases_lock: threading.Lock
    _closed: bool

    def _authed(self, what: str, path: str, fn: Callable[[], T], raw_404: bool = False) -> T:
        raise NotImplementedError

    def renew_lease(self, lease_id: str, increment: float) -> Renewal:
        """LeaseGone when Vault no longer knows it; (remaining, False, ...) when it can no
        longer be extended."""
        inc = int(increment) if increment and increment > 0 else None
        try:
            response = self._authed("lease renewal", "sys/leases/renew", lambda: (
                self.client.api.put("/v1/sys/leases/renew", {"lease_id": lease_id, **(
                    {"increment": inc} if inc else {})})))
        except Refused as exc:
            text = exc.text.lower()
            if any(g in text for g in GONE):
                self._forget(lease_id)
                raise LeaseGone(f"lease renewal: Vault no longer knows the lease "
                                f"({exc.text})") from None
            if any(n in text for n in NOT_EXTENDABLE):
                remaining = self.lookup_lease(lease_id)
                if remaining is None:
                    raise LeaseGone(f"lease renewal: {exc.text}") from None
                return Renewal(remaining, False, [exc.text])
            if BACKEND_FAILED in text:
                # The engine behind the lease could not extend the secret (e.g. the
                # database role was dropped): retrying until expiry would leave the app
                # on a dead credential, so ask for a successor now. The lease itself is
                # still Vault's to revoke, so it is not forgotten here.
                raise LeaseGone(f"lease renewal: Vault could not renew the secret behind "
                                f"the lease ({exc.text})") from None
            raise ConfigError(f"lease renewal refused: {exc.text}") from None
        body = response if isinstance(response, dict) else {}
        warnings = [str(w) for w in (body.get("warnings") or [])]
        return Renewal(float(body.get("lease_duration") or 0), bool(body.get("renewable")),
                       warnings)

    def revoke_lease(self, lease_id: str) -> None:
        try:
            self._authed("lease revocation", "sys/leases/revoke",
                         lambda: self.client.api.put("/v1/sys/leases/revoke",
                                                             {"lease_id": lease_id}))
        except Refused as exc:
            raise ConfigError(f"lease revocation refused: {exc.text}") from None
        self._forget(lease_id)

    def lookup_lease(self, lease_id: str) -> float | None:
        """Remaining seconds, or None when Vault no longer knows the lease."""
        try:
            response = self._authed("lease lookup", "sys/leases/lookup",
                                    lambda: self.client.api.put("/v1/sys/leases/lookup",
                                                                 {"lease_id": lease_id}))
        except Refused as exc:
            if any(g in exc.text.lower() for g in GONE):
                return None
            raise ConfigError(f"lease lookup refused: {exc.text}") from None
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            return None
        return float(data.get("ttl") or 0)

    def _hold(self, path: str, lease_id: str) -> None:
        """Remember a new lease, to revoke at close; after close, give it back at once.

        A read that was under way when close() took its list comes back with a lease
        nobody would revoke: with a token the user gave (never revoked by us, so its
        leases do not end with it) it would live until its TTL."""
        with self._leases_lock:
            late = self._closed
            if not late:
                self._leases.add(lease_id)
        if not late:
            return
        if self.revoke_on_close:
            try:
                self.revoke_lease(lease_id)
                self.log.info("vault: revoked a lease of %s that arrived after shutdown began",
                              path)
            except EntrypointError as exc:
                self.log.warning("vault: could not revoke a lease of %s that arrived after "
                                 "shutdown began: %s", path, exc)
        raise UnavailableError(f"vault:{path}: shutting down; the new lease is not used")

    def _forget(self, lease_id: str) -> None:
        with self._leases_lock:
            self._leases.discard(lease_id)
