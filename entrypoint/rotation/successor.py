"""What changes hands between one generation and its successor: leases and actions."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolve import Generation
from entrypoint.process import events
from entrypoint.process.events import Post
from entrypoint.rotation.actions import Plan
from entrypoint.rotation.leases import HeldLease
from entrypoint.rotation.source_watches import in_use
from entrypoint.sources.base import Fetched, Refresh


def unwatched_carried(old: Generation) -> set[SourceKey]:
    """The watched values ``old`` carried while none of its outputs read them: not
    watched then, so maybe stale."""
    return {k for k, v in old.fetched.items()
            if v.refresh is Refresh.WATCH and not in_use(old, k)}


def successor_seed(old: Generation, refetch: Collection[SourceKey],
                   fresh: Mapping[SourceKey, Fetched]) -> dict[SourceKey, Fetched]:
    """What the successor of ``old`` starts from: what has not changed, with what was read
    already for a change (``fresh``). A key in ``refetch`` (changed, or carried unwatched)
    is read afresh if an output reads it: a value taken up again is never rendered old,
    then new."""
    seed = {k: v for k, v in old.fetched.items() if k not in refetch}
    seed.update({k: v for k, v in fresh.items() if k in refetch})
    return seed


def stale_leases(old: Generation, new: Generation) -> list[HeldLease]:
    """Leases of ``old`` that ``new`` no longer uses: to revoke once the app moved on."""
    stale = []
    for key, fetched in old.fetched.items():
        successor = new.fetched.get(key)
        if fetched.lease_id and (successor is None or successor.lease_id != fetched.lease_id):
            lease = HeldLease.from_fetched(key, fetched)
            if lease is not None:
                stale.append(lease)
    return stale


def new_leases(old: Generation, new: Generation) -> list[tuple[SourceKey, str]]:
    """Leases ``new`` obtained that ``old`` did not hold."""
    out = []
    for key, fetched in new.fetched.items():
        kept = old.fetched.get(key)
        if fetched.lease_id and (kept is None or kept.lease_id != fetched.lease_id):
            out.append((key, fetched.lease_id))
    return out


def log_replaced(log: logging.Logger, old: Generation, keys: set[SourceKey], outcome: str,
                 error: str | None) -> None:
    """One structured event per key a successor fetched again (or failed to), at debug
    level: ``status`` and ``/metrics`` count them, the warning or info line says it."""
    for key in keys:
        item = old.fetched.get(key)
        log.debug("replacement of %s: %s", key.label, outcome, extra={
            "event": "lease_replace", "outcome": outcome, "key": key.label,
            "kind": item.kind if item else "unknown", "error": error})
    if outcome == "ok":
        log.debug("new values in place", extra={"event": "refresh"})


def post_plan(plan: Plan, env: dict[str, str], reason: str, names: list[str],
              post: Post, log: logging.Logger, *, generation: int = 0) -> None:
    """Hand the supervisor the actions a successor calls for, and say why.

    The restart (if any) goes first, then signals (never with a restart: ``decide``
    drops them), then commands: a command posted after a Restart runs once the app
    runs on ``env`` (the supervisor holds it until then), so it sees the new values.
    """
    if plan.nothing:
        log.info("values re-read, nothing the app sees changed (%s)", reason,
                 extra={"event": "no_action", "reason": reason})
        return
    if plan.restart:
        log.info("rotation: restarting the app (%s); changed: %s", reason,
                 ", ".join(names) or "files", extra={"event": "rotation", "reason": reason,
                                                     "changed": ", ".join(names) or "files"})
        post(events.Restart(env=env, reason=reason, generation=generation))
    for signum in plan.signals:
        post(events.SignalChild(signum=signum, reason=reason))
    for argv in plan.commands:
        post(events.RunCommand(argv=argv, reason=reason))
