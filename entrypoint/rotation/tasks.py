"""The engine's scheduled tasks: renewing and replacing leases, following the login
that made them, polling, checking that leases still exist, and noticing expiry.

A mixin of :class:`~entrypoint.rotation.engine.Engine`, apart so that each file reads in
one sitting; every method runs on the engine's own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from entrypoint import backoff
from entrypoint.config.model import Config
from entrypoint.errors import EntrypointError, LeaseGone, UnavailableError
from entrypoint.plan.keys import SourceKey
from entrypoint.process.events import Fatal, Post
from entrypoint.rotation import timing
from entrypoint.rotation.leases import HeldLease, Revoker
from entrypoint.sources.base import Fetched, LoginState, Refresh, Source

if TYPE_CHECKING:
    from entrypoint.plan.resolution import Resolution, Runtime


class Tasks:
    config: Config
    runtime: Runtime
    post: Post
    log: logging.Logger
    clock: Callable[[], float]
    rng: Callable[[], float]
    leases: dict[SourceKey, HeldLease]
    revoker: Revoker
    dirty: set[SourceKey]
    fresh: dict[SourceKey, Fetched]
    failures: dict[str, int]
    resolution: Resolution | None
    _poll_token: dict[SourceKey, int]
    ttl_ends: dict[SourceKey, float]
    ttl_reported: set[SourceKey]
    _exiting: bool

    def _schedule(self, when: float, *task: Any) -> None:
        raise NotImplementedError

    def _schedule_poll(self, key: SourceKey, item: Fetched, now: float) -> None:
        raise NotImplementedError

    def _mark(self, key: SourceKey, reason: str) -> None:
        raise NotImplementedError

    def _current(self, key: SourceKey, lease_id: str) -> HeldLease | None:
        lease = self.leases.get(key)
        return lease if lease is not None and lease.lease_id == lease_id else None

    def _task_renew(self, key: SourceKey, lease_id: str) -> None:
        lease = self._current(key, lease_id)
        # Renewed even when a successor is on its way (key in self.dirty): the successor
        # may fail for a long time (entrypoint rotate, then Vault refusing new creds),
        # and this lease is what the app runs on until one arrives.
        if lease is None:
            return
        now = self.clock()
        try:
            granted, renewable, warnings = self._source(key).renew_lease(lease_id,
                                                                          lease.requested)
        except LeaseGone as exc:
            # Revoked, expired, or its secret could no longer be renewed (a dropped role):
            # the source's message says which.
            self.log.warning("lease of %s cannot be kept (%s); fetching a new one",
                             lease.label, exc,
                             extra=lease.fields("lease_renew", "gone", error=str(exc)))
            self.revoker.gone.add(lease_id)
            self._mark(key, f"lease of {lease.label} revoked")
            return
        except EntrypointError as exc:
            lease.failures += 1
            delay = min(backoff.running_delay(lease.failures, self.rng),
                        max(0.0, lease.times.expires_at - now))
            self.log.warning("renewing lease of %s failed: %s; retry in %.1fs",
                             lease.label, exc, delay,
                             extra=lease.fields("lease_renew", "error", error=str(exc),
                                                delay=round(delay, 3),
                                                attempt=lease.failures))
            self._schedule(now + delay, "renew", key, lease_id)
            return
        if lease.failures:
            self.log.info("recovered: renewed lease of %s after %d failed attempts",
                          lease.label, lease.failures)
        lease.failures = 0
        lease.times = timing.LeaseTimes(now, now + granted, renewable)
        if not renewable or backoff.is_capped(lease.requested, granted, warnings):
            when = self._replace_at(lease.times, now)
            self.log.info("lease of %s cannot be extended past %.0fs; replacing it in %.1fs",
                          lease.label, granted, when - now,
                          extra=lease.fields("lease_renew", ttl=granted,
                                             delay=round(when - now, 3)))
            self._schedule(when, "replace", key, lease_id)
        else:
            self.log.info("renewed lease of %s ttl=%.0fs", lease.label, granted,
                          extra=lease.fields("lease_renew", ttl=granted))
            self._schedule(timing.renew_at(lease.times, self.config.renew_fraction, self.rng),
                           "renew", key, lease_id)

    def _margin(self) -> float:
        # The successor must be running before the old credential ends, and the
        # coalescer may still hold the change for up to wait_max after this moment.
        return timing.MIN_MARGIN + max(self.config.wait_min, self.config.wait_max)

    def _replace_at(self, times: timing.LeaseTimes, now: float) -> float:
        return timing.replace_at(times, now, self.config.replace_fraction, self.rng,
                                 margin=self._margin())

    def _task_replace(self, key: SourceKey, lease_id: str, why: str = "nearing its end") -> None:
        lease = self._current(key, lease_id)
        if lease is not None:
            self._mark(key, f"lease of {lease.label} {why}")

    def _task_expire(self, key: SourceKey, token: int) -> None:
        """A value valid for a ttl of its own (no lease) nears its end: replace it."""
        if self._poll_token.get(key) == token:
            self._mark(key, f"{key.label} nearing the end of its ttl")

    def _source(self, key: SourceKey) -> Source:
        return self.runtime.sources.get(key.scheme)

    def _login_state(self, key: SourceKey) -> LoginState | None:
        """Which login made the current token of the source of ``key`` and when that
        token ends; None for sources that do not log in. Memory only, no request."""
        source = self.runtime.sources.built().get(key.scheme)
        return source.login_state() if source is not None else None

    def _follow_tokens(self, now: float) -> None:
        """Leases made by a token that was replaced by a new login end with that token:
        replace them before it ends (the new token alone changes nothing for the app)."""
        for key, lease in list(self.leases.items()):
            if lease.token_generation is None or lease.token_replacing or key in self.dirty:
                continue
            state = self._login_state(key)
            if state is None:
                continue
            generation, deadline = state
            if generation == lease.token_generation:
                lease.token_deadline = deadline  # the same token, renewed meanwhile
                continue
            lease.token_replacing = True
            ends = lease.token_deadline
            if ends is None or ends >= lease.times.expires_at:
                continue  # the lease ends first anyway: its own schedule covers it
            when = self._replace_at(timing.LeaseTimes(now, ends, False), now)
            self.log.info("lease of %s was made by the previous Vault token, which ends in "
                          "%.1fs; replacing it in %.1fs", lease.label, max(0.0, ends - now),
                          when - now)
            self._schedule(when, "replace", key, lease.lease_id,
                           "made by the previous Vault token")

    def _task_poll(self, key: SourceKey, token: int) -> None:
        if self._poll_token.get(key) != token or self.resolution is None:
            return
        old = self.resolution.generation.fetched.get(key)
        if old is None:
            return
        now = self.clock()
        label = key.label
        try:
            new = self._source(key).fetch(key.path, key.version)
        except EntrypointError as exc:
            attempt = self.failures[label] = self.failures.get(label, 0) + 1
            delay = backoff.running_delay(attempt, self.rng)
            self.log.warning("re-reading %s failed: %s; retry in %.1fs", label, exc, delay,
                             extra={"event": "poll", "outcome": "error", "key": label,
                                    "kind": old.kind, "error": str(exc),
                                    "delay": round(delay, 3), "attempt": attempt})
            self._schedule(now + delay, "poll", key, token)
            return
        if self.failures.pop(label, 0):
            self.log.info("recovered: re-read %s", label,
                          extra={"event": "poll", "key": label, "kind": old.kind})
        if not new.answers_as(old):
            self.fresh[key] = new
            detail = (f" (v{old.version} -> v{new.version})"
                      if new.version != old.version and new.version is not None else
                      " (password rotated by Vault)" if new.refresh is Refresh.ROTATED else "")
            self._mark(key, f"{label} changed{detail}")
            return
        if new.lease_id and new.lease_id != old.lease_id:
            # A poll of a leased path created a lease we do not need: give it back.
            self.revoker.revoke_ids(key, [new.lease_id])
        self._schedule_poll(key, new, now)

    def _task_check(self) -> None:
        now = self.clock()
        for key, lease in list(self.leases.items()):
            if key in self.dirty:
                continue
            try:
                remaining = self._source(key).lookup_lease(lease.lease_id)
            except EntrypointError as exc:
                self.log.debug("lease lookup of %s failed: %s", lease.label, exc)
                continue
            if remaining is None:
                self.log.warning("lease of %s was revoked; fetching a new one", lease.label)
                self.revoker.gone.add(lease.lease_id)
                self._mark(key, f"lease of {lease.label} revoked")
        self._schedule(timing.poll_at(now, self.config.lease_check_interval, self.rng), "check")

    def _check_expiry(self, now: float) -> None:
        if self._exiting:
            return
        ended = [(lease.key, f"lease of {lease.label}") for lease in self.leases.values()
                 if now >= lease.times.expires_at and not lease.expired_reported]
        for lease in self.leases.values():
            lease.expired_reported |= now >= lease.times.expires_at
        ended += [(key, f"value of {key.label} (its ttl)") for key, end in self.ttl_ends.items()
                  if now >= end and key not in self.ttl_reported]
        self.ttl_reported |= {key for key, end in self.ttl_ends.items() if now >= end}
        for key, what in ended:
            if self.config.on_expiry == "exit":
                self.post(Fatal(UnavailableError(
                    f"{what} expired and no successor could be fetched",
                    hint="on_expiry = exit")))
                # The supervisor stops the app and exits: no successor to fetch any more.
                self._exiting = True
                return
            self.log.error("%s expired and no successor could be fetched; the app keeps "
                           "running on the last values (on_expiry = keep)", what)
            self._mark(key, f"{what} expired")

    def _task_revoke_later(self, leases: tuple[HeldLease, ...]) -> None:
        self.revoker.revoke(list(leases), "grace period over")
