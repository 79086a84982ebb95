"""Pure lease and poll maths, with the clock and random source passed in.

These decide *when*: renew a lease, replace one that cannot be extended, re-read a
static secret. They never sleep and never read a clock themselves, so they are tested
exhaustively with plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from entrypoint import backoff

Rng = Callable[[], float]  # uniform in [0, 1)

# Never act closer to expiry than this: the app needs time to restart onto the successor.
MIN_MARGIN = backoff.RENEW_MARGIN
# A lease with no duration (Vault says 0) is checked again after this long.
DEFAULT_CHECK = 60.0


def replace_at_life(times: LeaseTimes, now: float, fraction: float, rng: Rng,
                    margin: float = MIN_MARGIN) -> float:
    """When to replace a value valid from ``updated_at`` to ``expires_at`` (a certificate
    from NotBefore to NotAfter): after ``fraction`` of its whole life (jittered by 5 %),
    not of what is left, so that one reused after a restart is replaced when the process
    that obtained it would have; never before ``now``, never later than ``margin`` before
    it ends."""
    margin = max(margin, MIN_MARGIN)
    target = times.updated_at + jittered(times.duration * fraction, rng, spread=0.05)
    return max(now, min(target, times.expires_at - margin))


def jittered(base: float, rng: Rng, spread: float = 0.1) -> float:
    """``base`` moved by up to ``spread`` of itself either way, never below zero."""
    return max(0.0, base * (1.0 - spread + 2.0 * spread * rng()))


@dataclass(frozen=True)
class LeaseTimes:
    """When a lease was last extended and until when it is valid (monotonic seconds)."""

    updated_at: float
    expires_at: float
    renewable: bool

    @property
    def duration(self) -> float:
        return self.expires_at - self.updated_at


def renew_at(lease: LeaseTimes, fraction: float, rng: Rng) -> float:
    """When to renew: after ``fraction`` of its current duration (``backoff.renew_delay``)."""
    if lease.duration <= 0:
        return lease.updated_at + DEFAULT_CHECK
    return lease.updated_at + backoff.renew_delay(lease.duration, fraction, rng)


def replace_at(lease: LeaseTimes, now: float, fraction: float, rng: Rng,
               margin: float = MIN_MARGIN) -> float:
    """When to fetch a successor for a lease that cannot be extended any further.

    After ``fraction`` of its *remaining* life (jittered by 5 %), and never later than
    ``margin`` (at least ``MIN_MARGIN``) before it expires — never after it has expired.
    The caller widens ``margin`` by what still comes between this moment and the app
    running on the successor (the coalescing wait): the database itself stops accepting
    the old password up to a second before the lease ends, because Vault writes its
    expiry in whole seconds (``VALID UNTIL``), which is what ``MIN_MARGIN`` covers.
    """
    margin = max(margin, MIN_MARGIN)
    remaining = lease.expires_at - now
    if remaining <= margin:
        return now
    delay = jittered(remaining * fraction, rng, spread=0.05)
    # The bound as written, not now + (remaining - margin): that sum can round one step
    # past expires_at - margin.
    return max(now, min(now + delay, lease.expires_at - margin))


def poll_at(now: float, interval: float, rng: Rng) -> float:
    """Next re-read of a static secret: ``interval`` jittered by 10 %."""
    return now + jittered(interval, rng)


# A database static role is re-read this long after the rotation Vault announced (its
# ``ttl`` is in whole seconds), spread over STATIC_SPREAD more so that a fleet does not
# read in one instant. While Vault says the rotation is due but the password has not
# changed yet (its rotation queue runs on a tick), it is asked again every STATIC_RECHECK.
STATIC_AFTER = 0.25
STATIC_SPREAD = 0.5
STATIC_RECHECK = 0.5


def static_creds_poll_at(now: float, interval: float, ttl: float | None, rng: Rng) -> float:
    """Re-read a database static role just after Vault rotates it, or at ``interval``.

    The jitter never pushes the read later than 0.75 s past the ttl Vault announced (in
    whole seconds, which can add up to one more: 1.75 s past the rotation at most): the old
    password stops working in the database the moment Vault changes it, so every second
    of delay is a second of failed logins for the app (a percentage of a day-long ttl
    would be an hour of them). A rotation due and not yet made (ttl 0: Vault's queue
    runs every 5 s) is asked again every ``STATIC_RECHECK``.
    """
    if ttl is not None and ttl <= 0:
        return now + min(interval, STATIC_RECHECK)
    if ttl is not None and ttl + STATIC_AFTER + STATIC_SPREAD < interval:
        return now + ttl + STATIC_AFTER + STATIC_SPREAD * rng()
    return now + jittered(interval, rng, spread=0.05)
