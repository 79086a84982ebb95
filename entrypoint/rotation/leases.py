"""The leases this process holds, and giving them back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.timing import LeaseTimes
from entrypoint.sources.base import Fetched
from entrypoint.sources.registry import Sources


@dataclass
class HeldLease:
    key: SourceKey
    lease_id: str = field(repr=False)
    requested: float
    times: LeaseTimes
    failures: int = 0
    expired_reported: bool = False
    # Vault revokes a token's leases when that token ends: which login made this lease,
    # and until when that token was last seen to be valid (monotonic seconds).
    token_generation: int | None = None
    token_deadline: float | None = None
    token_replacing: bool = False

    @classmethod
    def from_fetched(cls, key: SourceKey, fetched: Fetched) -> HeldLease | None:
        if not fetched.lease_id or fetched.lease_duration is None:
            return None
        start = fetched.fetched_at
        return cls(key=key, lease_id=fetched.lease_id, requested=fetched.lease_duration,
                   times=LeaseTimes(updated_at=start,
                                    expires_at=start + fetched.lease_duration,
                                    renewable=fetched.renewable))

    @property
    def label(self) -> str:
        return self.key.label

    def fields(self, event: str, outcome: str = "ok", **more: Any) -> dict[str, Any]:
        """The structured fields of a log line about this lease (never its id)."""
        from entrypoint.ops.state import short_lease_id

        return {"event": event, "outcome": outcome, "key": self.label, "kind": "leased",
                "lease": short_lease_id(self.lease_id), **more}


class Revoker:
    """Gives leases back to their source, except those the source said are gone already."""

    def __init__(self, sources: Sources, log: logging.Logger) -> None:
        self.sources = sources
        self.log = log
        # Leases the source told us are gone (revoked by ops): nothing left to give back.
        self.gone: set[str] = set()

    def revoke(self, leases: list[HeldLease], why: str) -> None:
        for lease in leases:
            self.revoke_ids(lease.key, [lease.lease_id], why=why)

    def revoke_ids(self, key: SourceKey, lease_ids: list[str], why: str = "unused") -> None:
        for lease_id in lease_ids:
            if lease_id in self.gone:
                self.gone.discard(lease_id)
                continue
            try:
                self.sources.get(key.scheme).revoke_lease(lease_id)
                from entrypoint.ops.state import short_lease_id

                self.log.info("revoked lease of %s (%s)", key.label, why,
                              extra={"event": "lease_revoke", "key": key.label,
                                     "lease": short_lease_id(lease_id), "reason": why})
            except EntrypointError as exc:
                self.log.warning("could not revoke lease of %s: %s", key.label, exc)
