"""Pure retry and renewal maths: no clock, no sleep, no global random source.

Every function takes the random source (``rng() -> float in [0, 1)``) and, where time
matters, "now" as arguments, so that each is tested exhaustively with plain numbers and
the callers (the Vault client at start-up, the token keeper, the rotation engine) stay
deterministic under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

Rng = Callable[[], float]  # uniform in [0, 1)

# Start-up retries: first wait up to 0.5 s, doubling to at most 10 s.
RETRY_BASE = 0.5
RETRY_CAP = 10.0
# While running there is no hurry (the app has its values): 1 s doubling to 30 s.
RUNNING_BASE = 1.0
RUNNING_CAP = 30.0
# Renewals are spread over the last tenth before the chosen fraction, so that many
# containers started together do not renew in lock step.
RENEW_JITTER = 0.1
# Never leave less than this between a renewal and the expiry it prevents.
RENEW_MARGIN = 1.0
# A token whose renewal was capped is replaced once this much of what is left has passed.
RELOGIN_FRACTION = 0.8


def retry_delay(attempt: int, base: float, cap: float, rng: Rng) -> float:
    """Capped exponential backoff with full jitter.

    ``attempt`` counts failures from 1: the bound is ``base``, ``2*base``, ``4*base``...
    never above ``cap``; the delay is uniform between 0 and that bound (full jitter, so
    that clients that failed together do not retry together).
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be 0 or more")
    # The exponent is clamped so that a long outage cannot overflow the float.
    bound = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return rng() * bound


def running_delay(attempt: int, rng: Rng) -> float:
    """Backoff for failures after start-up (renewals, polls, watches, the token)."""
    return retry_delay(attempt, RUNNING_BASE, RUNNING_CAP, rng)


def renew_delay(ttl: float, fraction: float, rng: Rng) -> float:
    """Seconds from now until a lease or token of ``ttl`` seconds should be renewed.

    At ``fraction`` of the ttl, pulled earlier by up to ``RENEW_JITTER`` of itself, and
    never later than ``RENEW_MARGIN`` before expiry (nor before now). A ttl of 0 means
    "does not expire" and gives ``math.inf``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if ttl <= 0:
        return math.inf
    target = ttl * fraction * (1.0 - RENEW_JITTER * rng())
    return max(0.0, min(target, ttl - RENEW_MARGIN))


def is_capped(requested: float, granted: float, warnings: Iterable[str] = ()) -> bool:
    """A renewal that gave less than asked hit the max TTL: there is no more room.

    Vault warns when it capped ("TTL value is capped"). Durations are whole seconds, so a
    capped grant is often just one second short: half a second of tolerance is enough
    for float noise and still sees that.
    """
    if any("capped" in w or "max_ttl" in w for w in warnings):
        return True
    return granted + 0.5 < requested


def relogin_delay(remaining: float, rng: Rng) -> float:
    """When to log in again for a token that cannot be extended (capped or not renewable).

    At ``RELOGIN_FRACTION`` of what is left, jittered down by up to 10 %, and at least
    ``RENEW_MARGIN`` before it ends.
    """
    if remaining <= RENEW_MARGIN:
        return 0.0
    target = remaining * RELOGIN_FRACTION * (1.0 - RENEW_JITTER * rng())
    return max(0.0, min(target, remaining - RENEW_MARGIN))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    ``now`` is the wall-clock time (Unix seconds) to measure an HTTP date against. An
    absent or unreadable header gives None; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    import email.utils  # only here: email pulls in socket, datetime, calendar (RSS)

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def startup_delay(attempt: int, retry_after: float | None, rng: Rng,
                  base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """The wait before start-up attempt ``attempt + 1``: backoff, but never less than the
    server asked for with ``Retry-After`` (which is honoured even above ``cap``)."""
    delay = retry_delay(attempt, base, cap, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
