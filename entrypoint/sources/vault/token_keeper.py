"""Keeps one Vault token usable: login, renewal ahead of expiry, login again, revoke.

A small daemon thread sleeps until the next renewal (on an Event, so that ``close`` wakes
it at once). The decisions -- when to renew, when a renewal hit the max TTL, when to log
in again -- are the pure functions of :mod:`entrypoint.backoff`; the clock and the random
source are injected, and :meth:`TokenKeeper.tick` runs one step for tests.

A new token alone re-issues no secret: leases already held stay as they are.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable

from entrypoint import backoff
from entrypoint.errors import AuthError, EntrypointError, UnavailableError
from entrypoint.sources.vault.auth import LoginMethod, LoginResult
from entrypoint.sources.vault.client import VaultClient, transient_reason, vault_message

RENEW_FRACTION = 0.75  # settings.renew_fraction's default


class TokenKeeper:
    def __init__(self, client: VaultClient, method: LoginMethod, *, log: logging.Logger,
                 revoke_on_exit: bool = True, renew_fraction: float = RENEW_FRACTION,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.client = client
        self.method = method
        self.log = log
        self.revoke_on_exit = revoke_on_exit
        self.renew_fraction = renew_fraction
        self.clock = clock
        self.rng = rng
        self.generation = 0  # bumped at every login; lets concurrent callers relogin once
        self.current: LoginResult | None = None
        self.expires_at = math.inf
        self.next_at = math.inf
        self.capped = False
        self.failures = 0
        # Two locks, so that no caller waits behind the network for longer than it must:
        # _lock guards the fields above and is never held across a request; _login_lock
        # serialises logins (and the revocation at close), so that callers who all saw
        # the same bad token log in once between them.
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- login --------------------------------------------------------------------------
    def ensure(self) -> int:
        """Log in if there is no token yet; the generation of the token in use.

        With a token in hand this returns at once, even while a renewal is under way."""
        with self._lock:
            if self.current is not None:
                return self.generation
        with self._login_lock:
            if self._stop:
                raise UnavailableError("vault: shutting down; not logging in again")
            if self.current is None:
                self._login("logged in")
            return self.generation

    def relogin(self, seen: int, why: str) -> int:
        """Log in again unless another thread already did since generation ``seen``."""
        with self._login_lock:
            if self.generation == seen and not self._stop:
                self.log.warning("vault: %s; logging in again with %s", why,
                                 self.method.describe())
                self._login("logged in again")
            return self.generation

    def _relogin_if(self, seen: int, why: str) -> None:
        with self._login_lock:
            if self.generation == seen and not self._stop:
                self.log.info("vault: %s; logging in again with %s", why,
                              self.method.describe())
                self._login("logged in again")

    def _login(self, verb: str) -> None:
        """The caller holds ``_login_lock`` (not ``_lock``: the login is a request)."""
        result = self.method.login(self.client)
        now = self.clock()
        with self._lock:
            self.client.set_token(result.token.reveal())
            self.current = result
            self.generation += 1
            self.capped = False
            self.failures = 0
            self.expires_at = now + result.ttl if result.ttl > 0 else math.inf
            if result.renewable:
                self.next_at = now + backoff.renew_delay(result.ttl, self.renew_fraction,
                                                         self.rng)
            else:
                self.next_at = now + backoff.relogin_delay(result.ttl, self.rng) \
                    if result.ttl > 0 else math.inf
        ttl = f"{result.ttl:g}s" if result.ttl > 0 else "no expiry"
        # A token the user gave is used, not logged in for: say which.
        what = (f"{verb} with" if result.created
                else "using the given token:" if verb == "logged in"
                else "re-read the given token:")
        self.log.info("vault: %s %s; token ttl %s, renewable %s, policies %s", what,
                      self.method.describe(), ttl, "yes" if result.renewable else "no",
                      ",".join(result.policies) or "none")
        self._wake.set()

    # -- renewal ------------------------------------------------------------------------
    def tick(self) -> float:
        """Renew or log in again if due; the monotonic time of the next step."""
        with self._lock:
            current, generation = self.current, self.generation
            if current is None or self.clock() < self.next_at:
                return self.next_at
            renew = current.renewable and not self.capped
        # No lock is held across the request: a fetch must not wait for a slow renewal.
        # What it finds is applied only if no login replaced the token meanwhile.
        try:
            if renew:
                self._renew(current, generation)
            else:
                self._relogin_if(generation, "token cannot be extended further")
        except EntrypointError as exc:
            self._failed(exc, generation)
        except Exception as exc:
            # A TLS failure or another surprise must not end the renewal thread silently.
            from entrypoint.describe import transport_reason

            self._failed(UnavailableError(f"token renewal: {transport_reason(exc)}"), generation)
        with self._lock:
            return self.next_at

    def _renew(self, current: LoginResult, generation: int) -> None:
        from entrypoint.sources.vault import answers as hx

        requested = current.ttl
        try:
            response = self.client.call("token renewal", lambda: (
                self.client.api.post("/v1/auth/token/renew-self", {})))
        except hx.VaultError as exc:
            if transient_reason(exc) is None:
                # 400 (not renewable, past max TTL) or 403 (revoked): only a login helps.
                self._relogin_if(generation, f"token renewal refused ({vault_message(exc)})")
                return
            raise UnavailableError(f"token renewal: {vault_message(exc)}") from None
        except Exception as exc:
            if transient_reason(exc) is None:
                raise
            raise UnavailableError(f"token renewal: {transient_reason(exc)}") from None
        auth = response.get("auth") or {} if isinstance(response, dict) else {}
        granted = float(auth.get("lease_duration") or 0)
        warnings = response.get("warnings") or [] if isinstance(response, dict) else []
        # Vault says so in a warning when it capped the TTL at the max; a shorter grant
        # than asked says the same on servers that do not warn.
        hit_max = any("capped" in str(w) for w in warnings)
        capped = (hit_max or backoff.is_capped(requested, granted)
                  or not auth.get("renewable", True))
        now = self.clock()
        with self._lock:
            if self.generation != generation:
                return  # a new login meanwhile: the renewed token is not the one in use
            self.failures = 0
            self.expires_at = now + granted if granted > 0 else math.inf
            self.capped = capped
            self.next_at = now + (backoff.relogin_delay(granted, self.rng) if capped else
                                  backoff.renew_delay(granted, self.renew_fraction, self.rng))
        if capped:
            self.log.info("vault: token renewed up to its max TTL (%gs left); logging in "
                          "again in %.0fs", granted, self.next_at - now)
        else:
            self.log.info("vault: token renewed, ttl %gs", granted)

    def _failed(self, exc: EntrypointError, generation: int) -> None:
        now = self.clock()
        with self._lock:
            if self.generation != generation:
                return  # the failure concerned a token that was replaced meanwhile
            self.failures += 1
            failures = self.failures
            # Full jitter may draw ~0: a floor keeps a dead Vault from being hammered.
            delay = max(0.5, backoff.running_delay(failures, self.rng))
            if self.expires_at != math.inf:
                # Keep trying before the token expires, not after.
                delay = min(delay, max(0.5, (self.expires_at - now) / 2))
            self.next_at = now + delay
        self.log.warning("vault: keeping the token alive failed: %s; retry in %.1fs", exc, delay,
                         extra={"attempt": failures})

    # -- thread -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop:
                return
            self._thread = threading.Thread(target=self._run, name="vault-token",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            next_at = self.tick()
            wait = next_at - self.clock()
            self._wake.clear()
            if wait > 0:
                # A long sleep is cut into pieces so that a suspended host (clock jump)
                # is noticed within a minute.
                self._wake.wait(min(wait, 60.0))

    # -- end ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop renewing; revoke the token if we created it and revoke_on_exit is set."""
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._login_lock:  # no login under way, and none after this (``_stop``)
            with self._lock:
                current = self.current
            if current is None or not current.created or not self.revoke_on_exit:
                return
            if current.batch:
                # Vault refuses to revoke a batch token (400): it ends at its TTL.
                self.log.info("vault: our batch token is not revoked: Vault ends it at its TTL")
                return
            try:
                self.client.api.post("/v1/auth/token/revoke-self")
                self.log.info("vault: revoked our token (revoke_on_exit)")
            except Exception as exc:
                self.log.warning("vault: could not revoke our token: %s",
                                 transient_reason(exc) or vault_message(exc))
            with self._lock:
                self.current = None

    def policies(self) -> tuple[str, ...]:
        return self.current.policies if self.current else ()


__all__ = ["AuthError", "TokenKeeper"]
