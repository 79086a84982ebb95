"""Response wrapping (reference section 8.2): X-Vault-Wrap-TTL and sys/wrapping/*.

A wrapped answer is kept under a single-use token with the `response-wrapping` policy;
unwrapping hands the original answer back once and revokes that token.
"""

from __future__ import annotations

from typing import Any

from tests.vaultserver import tokens
from tests.vaultserver.state import State
from tests.vaultserver.wire import (
    Request,
    Response,
    VaultError,
    bad_request,
    ok,
    parse_duration,
    rfc3339nano,
)

WRAPPING_POLICY = {
    "cubbyhole/response": ["create", "read"],
    "sys/wrapping/unwrap": ["update"],
    "sys/wrapping/lookup": ["update"],
}
NOT_VALID = "wrapping token is not valid or does not exist"


def wrap_ttl(header: str | None) -> int | None:
    """Seconds from X-Vault-Wrap-TTL; None when absent, 400 when bad or negative."""
    if header is None or header == "":
        return None
    if header.strip().startswith("-"):
        raise bad_request("requested wrap ttl cannot be negative")
    ttl = parse_duration(header, "wrap ttl")
    return ttl or None


def wrap(state: State, request: Request, response: Response, ttl: int) -> Response:
    """Keep `response` under a new wrapping token; answer with wrap_info only."""
    if response.status != 200 or response.body is None:
        return response
    with state.lock:
        state.policies.setdefault("response-wrapping", dict(WRAPPING_POLICY))
        token = tokens.new_token(state, ["response-wrapping"], ttl=ttl, explicit_max_ttl=ttl,
                                 renewable=False, path=request.path, num_uses=1,
                                 display_name="", orphan=True, no_default_policy=True)
        state.wrapped[token.id] = response.body
    info: dict[str, Any] = {
        "token": token.id,
        "accessor": token.accessor,
        "ttl": ttl,
        "creation_time": rfc3339nano(token.creation_time),
        "creation_path": request.path,
    }
    auth = response.body.get("auth")
    if isinstance(auth, dict) and auth.get("accessor"):
        info["wrapped_accessor"] = auth["accessor"]
    body = {"request_id": "", "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": None, "wrap_info": info, "warnings": None, "auth": None}
    return Response(200, body)


def handle(state: State, request: Request, rest: str) -> Response:
    if request.operation != "update":
        raise VaultError(405, "unsupported operation")
    token_id = str(request.data.get("token") or request.token or "")
    with state.lock:
        body = state.wrapped.get(token_id)
        token = state.tokens.get(token_id)
        if body is None or token is None:
            raise bad_request(NOT_VALID)
        if rest == "lookup":
            return ok({"creation_path": token.path,
                       "creation_time": rfc3339nano(token.creation_time),
                       "creation_ttl": token.ttl})
        if rest == "unwrap":
            del state.wrapped[token_id]
            tokens.revoke_token(state, token_id)
            return Response(200, dict(body))
    raise VaultError(404, f'no handler for route "sys/wrapping/{rest}". route entry not found.')


def expired(state: State, _now: float) -> None:
    """Forget wrapped answers whose token is gone (expired or revoked)."""
    with state.lock:
        for token_id in [t for t in state.wrapped if t not in state.tokens]:
            del state.wrapped[token_id]
