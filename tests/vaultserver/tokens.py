"""Tokens: creation, lookup, renewal, revocation (with the token's leases), auth/token/*.

Follows vault/token_store.go as the reference describes it (section 2): `hvs.` service
tokens, 24-character base62 accessors, TTL and max TTL measured from creation, renewal
capped with the CalculateTTL warning, revocation taking children and leases along.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from tests.vaultserver import leases
from tests.vaultserver.state import State, Token
from tests.vaultserver.wire import (
    SYSTEM_DEFAULT_TTL,
    SYSTEM_MAX_TTL,
    Request,
    Response,
    VaultError,
    as_bool,
    as_list,
    bad_request,
    base62,
    no_content,
    ok,
    parse_duration,
    rfc3339nano,
)


def new_token(
    state: State,
    policies: list[str],
    *,
    ttl: int = 0,
    max_ttl: int = 0,
    explicit_max_ttl: int = 0,
    period: int = 0,
    renewable: bool = True,
    path: str = "auth/token/create",
    display_name: str = "token",
    meta: dict[str, str] | None = None,
    parent: str | None = None,
    orphan: bool = False,
    num_uses: int = 0,
    token_id: str | None = None,
    no_default_policy: bool = False,
    renew_check: Callable[[Token], None] | None = None,
) -> Token:
    """A service token; ttl 0 means the system default (768h), unless it is root."""
    names = sorted(set(policies))
    if "root" not in names and not no_default_policy and "default" not in names:
        names = sorted([*names, "default"])
    effective_max = min(m for m in (max_ttl, explicit_max_ttl, SYSTEM_MAX_TTL) if m > 0)
    if period:
        ttl = period
    elif ttl <= 0:
        ttl = SYSTEM_DEFAULT_TTL
    ttl = min(ttl, effective_max)
    now = time.time()
    token = Token(
        id=token_id or f"hvs.{base62(24)}",
        accessor=base62(24),
        policies=names,
        path=path,
        display_name=display_name,
        creation_time=now,
        ttl=ttl,
        max_ttl=0 if period and not explicit_max_ttl else effective_max,
        explicit_max_ttl=explicit_max_ttl,
        period=period,
        renewable=renewable,
        orphan=orphan,
        parent=parent,
        meta=meta,
        num_uses=num_uses,
        expire_time=now + ttl,
        renew_check=renew_check,
    )
    with state.lock:
        state.tokens[token.id] = token
    return token


def root_token(state: State, token_id: str) -> Token:
    """The dev server's root token: policy root, no TTL, never expires."""
    now = time.time()
    token = Token(
        id=token_id,
        accessor=base62(24),
        policies=["root"],
        path="auth/token/root",
        display_name="root",
        creation_time=now,
        ttl=0,
        max_ttl=0,
        renewable=False,
        orphan=True,
    )
    with state.lock:
        state.tokens[token.id] = token
    return token


def auth_block(token: Token, lease_duration: int | None = None) -> dict[str, Any]:
    """HTTPAuth of translate_response.go."""
    return {
        "client_token": token.id,
        "accessor": token.accessor,
        "policies": token.policies,
        "token_policies": token.policies,
        "metadata": token.meta,
        "lease_duration": token.ttl if lease_duration is None else lease_duration,
        "renewable": token.renewable,
        "entity_id": token.entity_id,
        "token_type": "service",
        "orphan": token.orphan,
        "mfa_requirement": None,
        "num_uses": token.num_uses,
    }


def lookup_data(token: Token) -> dict[str, Any]:
    """handleLookup's fields."""
    now = time.time()
    data: dict[str, Any] = {
        "accessor": token.accessor,
        "creation_time": int(token.creation_time),
        "creation_ttl": token.ttl if token.last_renewal is None else _creation_ttl(token),
        "display_name": token.display_name,
        "entity_id": token.entity_id,
        "expire_time": None,
        "explicit_max_ttl": token.explicit_max_ttl,
        "id": token.id,
        "meta": token.meta,
        "num_uses": token.num_uses,
        "orphan": token.orphan,
        "path": token.path,
        "policies": token.policies,
        "ttl": 0,
        "type": "service",
    }
    if token.expire_time is not None:
        data["expire_time"] = rfc3339nano(token.expire_time)
        data["ttl"] = max(0, math.floor(token.expire_time - now))
        data["renewable"] = token.renewable
        data["issue_time"] = rfc3339nano(token.creation_time)
    if token.period:
        data["period"] = token.period
    if token.last_renewal is not None:
        data["last_renewal_time"] = int(token.last_renewal)
        data["last_renewal"] = rfc3339nano(token.last_renewal)
    return data


def _creation_ttl(token: Token) -> int:
    return token.period or token.ttl


def renew_token(state: State, token: Token, increment: int) -> Response:
    with state.lock:
        if token.expire_time is None:
            raise bad_request("invalid lease ID")
        if not token.renewable:
            raise bad_request("lease is not renewable")
        if token.renew_check is not None:
            token.renew_check(token)
        now = time.time()
        if token.period:
            ttl, warnings = leases.calculate_ttl(
                token.period, token.period, token.explicit_max_ttl, token.creation_time, now
            )
        else:
            ttl, warnings = leases.calculate_ttl(
                increment, token.ttl, token.max_ttl, token.creation_time, now
            )
        token.expire_time = now + ttl
        token.last_renewal = now
        return ok(None, auth=auth_block(token, ttl), warnings=warnings, mount_type="token")


def revoke_token(state: State, token_id: str) -> None:
    """Revoke a token, its children (recursively) and every lease made with them."""
    with state.lock:
        token = state.tokens.pop(token_id, None)
        if token is None:
            return
        for child in [t.id for t in state.tokens.values() if t.parent == token_id]:
            revoke_token(state, child)
        for lease_id in [i for i, lease in state.leases.items() if lease.token_id == token_id]:
            try:
                leases.revoke_lease(state, lease_id)
            except VaultError:
                state.leases.pop(lease_id, None)


def revoke_expired(state: State, now: float) -> None:
    with state.lock:
        due = [t.id for t in state.tokens.values() if t.expire_time and t.expire_time <= now]
        for token_id in due:
            revoke_token(state, token_id)


# -- auth/token/* -----------------------------------------------------------------------


def _token_from_body(state: State, request: Request) -> Token:
    value = request.data.get("token")
    if not value:
        raise bad_request("missing token")
    token = state.tokens.get(str(value))
    if token is None:
        raise VaultError(403, "bad token")  # Vault: ErrorResponse("bad token") + 403
    return token


def handle(state: State, request: Request, rest: str) -> Response:
    caller: Token = request.token_entry
    op = request.operation
    increment = parse_duration(request.data.get("increment"), "increment")
    if rest == "lookup-self" and op in ("read", "update"):
        return ok(lookup_data(caller), mount_type="token")
    if rest == "lookup" and op == "update":
        return ok(lookup_data(_token_from_body(state, request)), mount_type="token")
    if rest == "lookup-accessor" and op == "update":
        token = state.token_by_accessor(str(request.data.get("accessor", "")))
        if token is None:
            raise bad_request("invalid accessor")
        data = lookup_data(token)
        data["id"] = ""
        return ok(data, mount_type="token")
    if rest == "renew-self" and op == "update":
        return renew_token(state, caller, increment)
    if rest == "renew" and op == "update":
        return renew_token(state, _token_from_body(state, request), increment)
    if rest == "revoke-self" and op == "update":
        revoke_token(state, caller.id)
        return no_content()
    if rest == "revoke" and op == "update":
        revoke_token(state, _token_from_body(state, request).id)
        return no_content()
    if rest == "revoke-accessor" and op == "update":
        token = state.token_by_accessor(str(request.data.get("accessor", "")))
        if token is not None:
            revoke_token(state, token.id)
        return no_content()
    if rest in ("create", "create-orphan") and op == "update":
        return _create(state, request, caller, orphan=rest == "create-orphan")
    raise VaultError(405, "unsupported operation") if rest in _KNOWN else VaultError(
        404, f'no handler for route "auth/token/{rest}". route entry not found.'
    )


_KNOWN = {"lookup-self", "lookup", "renew-self", "renew", "revoke-self", "revoke", "create"}


def _create(state: State, request: Request, caller: Token, orphan: bool) -> Response:
    data = request.data
    policies = as_list(data.get("policies"))
    if not policies:
        policies = [p for p in caller.policies if p != "default"] or ["default"]
    if "root" not in caller.policies and not set(policies) <= set(caller.policies) | {"default"}:
        raise bad_request("child policies must be subset of parent")
    orphan = orphan or as_bool(data.get("no_parent"))
    token = new_token(
        state,
        policies,
        ttl=parse_duration(data.get("ttl"), "ttl"),
        explicit_max_ttl=parse_duration(data.get("explicit_max_ttl"), "explicit_max_ttl"),
        period=parse_duration(data.get("period"), "period"),
        renewable=as_bool(data.get("renewable"), default=True),
        display_name="token" + (f"-{data['display_name']}" if data.get("display_name") else ""),
        meta=data.get("meta") or None,
        parent=None if orphan else caller.id,
        orphan=orphan,
        num_uses=int(data.get("num_uses") or 0),
        token_id=data.get("id") or None,
        no_default_policy=as_bool(data.get("no_default_policy")),
    )
    with state.lock:
        missing = sorted(p for p in token.policies if p not in state.policies and p != "root")
    warnings = [f'Policy "{name}" does not exist' for name in missing]
    return ok(None, auth=auth_block(token), warnings=warnings, mount_type="token")
