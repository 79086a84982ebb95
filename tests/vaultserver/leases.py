"""Leases: registration, renewal with max-TTL capping, revocation, and sys/leases/*.

The TTL maths is sdk/framework/lease.go CalculateTTL: the increment (or the default TTL)
is capped so that the lease never outlives issue_time + max_ttl, and the cap adds the
`TTL of "..." exceeded the effective max_ttl of "..."` warning. Answers and messages are
those of vault/logical_system.go (reference section 7).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from tests.vaultserver.state import Lease, State
from tests.vaultserver.wire import (
    Request,
    Response,
    VaultError,
    as_bool,
    bad_request,
    base62,
    no_content,
    ok,
    parse_duration,
    rfc3339nano,
    ttl_cap_warning,
)

log = logging.getLogger(__name__)


def calculate_ttl(
    increment: int, default_ttl: int, max_ttl: int, issue_time: float, now: float
) -> tuple[int, list[str]]:
    """(ttl, warnings) as CalculateTTL gives them; VaultError past the max TTL."""
    ttl = increment if increment > 0 else default_ttl
    warnings: list[str] = []
    if max_ttl <= 0:
        return ttl, warnings
    max_valid = issue_time + max_ttl
    if max_valid <= now:
        raise bad_request("past the max TTL, cannot renew")
    # Whole seconds, as the expiration manager rounds them; floor keeps us inside max.
    remaining = math.floor(max_valid - now)
    if now + ttl > max_valid:
        warnings.append(ttl_cap_warning(ttl, remaining))
        ttl = remaining
    if ttl <= 0:
        raise bad_request("past the max TTL, cannot renew")
    return ttl, warnings


def register(
    state: State,
    path: str,
    ttl: int,
    default_ttl: int,
    max_ttl: int,
    token_id: str | None,
    revoke: Callable[[Lease], None],
    renew: Callable[[Lease, int], None] | None = None,
    secret: dict[str, Any] | None = None,
) -> Lease:
    """A new lease `path/<24 base62>` (expiration.go Register)."""
    now = time.time()
    lease = Lease(
        id=f"{path}/{base62(24)}",
        path=path,
        issue_time=now,
        expire_time=now + ttl,
        ttl=ttl,
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        renewable=renew is not None,
        token_id=token_id,
        revoke=revoke,
        renew=renew,
        secret=secret or {},
    )
    with state.lock:
        state.leases[lease.id] = lease
    return lease


def revoke_lease(state: State, lease_id: str) -> bool:
    """Run the backend's revocation and forget the lease; False if unknown."""
    with state.lock:
        lease = state.leases.get(lease_id)
        if lease is None:
            return False
        try:
            lease.revoke(lease)
        except Exception as exc:
            lease.failed_revocations += 1
            # expiration.go retries with a growing delay; a broken lease must not spin.
            lease.retry_revocation_at = time.time() + min(2**lease.failed_revocations, 30)
            message = f"failed to revoke entry: resp: (*logical.Response)(nil) err: {exc}"
            raise bad_request(message) from exc
        del state.leases[lease_id]
        return True


def renew_lease(state: State, lease_id: str, increment: int) -> tuple[Lease, list[str]]:
    with state.lock:
        lease = state.leases.get(lease_id)
        if lease is None:
            raise bad_request("lease not found")
        now = time.time()
        if lease.expire_time <= now:
            if lease.failed_revocations:
                raise bad_request("lease is expired and has failed previous revocation attempts")
            raise bad_request("lease expired")
        if not lease.renewable or lease.renew is None:
            raise bad_request("lease is not renewable")
        ttl, warnings = calculate_ttl(
            increment, lease.default_ttl, lease.max_ttl, lease.issue_time, now
        )
        try:
            lease.renew(lease, ttl)
        except VaultError:
            raise
        except Exception as exc:
            raise bad_request(
                f"failed to renew entry: resp: (*logical.Response)(nil) err: {exc}"
            ) from exc
        lease.ttl = ttl
        lease.expire_time = now + ttl
        lease.last_renewal = now
        return lease, warnings


def revoke_expired(state: State, now: float) -> None:
    """The reaper's part for leases: revoke every lease past its expiry."""
    with state.lock:
        due = [lease.id for lease in state.leases.values()
               if lease.expire_time <= now and lease.retry_revocation_at <= now]
        for lease_id in due:
            try:
                revoke_lease(state, lease_id)
            except VaultError as exc:
                log.warning("revocation of expired lease %s failed: %s", lease_id, exc)


# -- sys/leases/* ------------------------------------------------------------------------


def _lease_id(request: Request, suffix: str) -> str:
    lease_id = request.data.get("lease_id") or suffix
    if not lease_id:
        raise bad_request("lease_id must be specified")
    return str(lease_id)


def handle(state: State, request: Request, rest: str) -> Response:
    """Paths under sys/leases/ (and the old sys/renew, sys/revoke aliases)."""
    action, _, suffix = rest.partition("/")
    if request.operation == "list" and action == "lookup":
        return _list(state, suffix)
    if request.operation != "update":
        raise VaultError(405, "unsupported operation")
    if action == "renew":
        lease_id = _lease_id(request, suffix)
        with state.lock:
            if lease_id in state.tokens or lease_id.startswith("auth/"):
                raise bad_request("tokens cannot be renewed through this endpoint")
        increment = parse_duration(request.data.get("increment"), "increment")
        lease, warnings = renew_lease(state, lease_id, increment)
        return ok(
            None,
            lease_id=lease.id,
            renewable=lease.renewable,
            lease_duration=lease.ttl,
            warnings=warnings,
        )
    if action == "revoke":
        lease_id = _lease_id(request, suffix)
        if as_bool(request.data.get("sync"), default=True):  # Vault's default: sync
            revoke_lease(state, lease_id)  # a failed revocation is its 400
            return no_content()
        # LazyRevoke: 202, empty body, also for an unknown lease.
        try:
            revoke_lease(state, lease_id)
        except VaultError as exc:
            log.warning("lazy revocation of %s failed: %s", lease_id, exc)
        return Response(202, None)
    if action in ("revoke-prefix", "revoke-force"):
        if not suffix:
            raise bad_request("prefix must be specified")
        with state.lock:
            for lease_id in [i for i in state.leases if i.startswith(suffix)]:
                try:
                    revoke_lease(state, lease_id)
                except VaultError:
                    if action == "revoke-prefix":
                        raise
                    state.leases.pop(lease_id, None)
        return no_content() if action == "revoke-force" else Response(202, None)
    if action == "lookup":
        lease_id = _lease_id(request, suffix)
        with state.lock:
            found = state.leases.get(lease_id)
            if found is None:
                raise bad_request("invalid lease")
            lease = found
            now = time.time()
            return ok(
                {
                    "expire_time": rfc3339nano(lease.expire_time),
                    "id": lease.id,
                    "issue_time": rfc3339nano(lease.issue_time),
                    "last_renewal": rfc3339nano(lease.last_renewal) or None,
                    "renewable": lease.renewable,
                    "ttl": max(0, math.floor(lease.expire_time - now)),
                }
            )
    raise VaultError(404, f'no handler for route "sys/leases/{rest}". route entry not found.')


def _list(state: State, prefix: str) -> Response:
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    with state.lock:
        keys = set()
        for lease_id in state.leases:
            if lease_id.startswith(prefix):
                head, slash, _ = lease_id[len(prefix) :].partition("/")
                keys.add(head + slash)
    if not keys:
        raise VaultError(404)
    return ok({"keys": sorted(keys)})
