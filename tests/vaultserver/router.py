"""From a logical request to an answer: seal check, token, ACL, then the right handler."""

from __future__ import annotations

import time

from tests.vaultserver import leases, system, tokens, wrapping
from tests.vaultserver.state import State
from tests.vaultserver.wire import (
    INVALID_TOKEN,
    PERMISSION_DENIED,
    Request,
    Response,
    VaultError,
)


def no_route(path: str) -> VaultError:
    return VaultError(404, f'no handler for route "{path}". route entry not found.')


def _is_login(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 3 and parts[0] == "auth" and parts[-1] == "login" and parts[1] != "token"


def authenticate(state: State, request: Request) -> None:
    """Find the token: none is 403 permission denied, unknown/expired adds invalid token."""
    if not request.token:
        raise VaultError(403, PERMISSION_DENIED)
    with state.lock:
        token = state.tokens.get(request.token)
        if token is None or (token.expire_time is not None and token.expire_time <= time.time()):
            raise VaultError(403, INVALID_TOKEN)
        request.token_entry = token
        request.accessor = token.accessor


def dispatch(state: State, request: Request) -> Response:
    path = request.path
    if state.sealed:
        raise VaultError(503, "Vault is sealed")
    if _is_login(path):
        mount = state.find_mount(path[len("auth/") :], state.auth_mounts)
        if mount is None or mount.engine is None:
            raise no_route(path)
        rest = path[len("auth/") + len(mount.path) :]
        return mount.engine.handle(request, rest)  # type: ignore[no-any-return]
    if path == "sys/wrapping/lookup":  # unauthenticated in Vault, and it must not spend a use
        return wrapping.handle(state, request, "lookup")
    if path == "sys/wrapping/unwrap" and not request.data.get("token"):
        # The wrapping token itself is the credential: a spent one is "not valid", not 403.
        return wrapping.handle(state, request, "unwrap")
    authenticate(state, request)
    token = request.token_entry
    if token.num_uses:
        # A use-limited token: this request spends a use; the last one revokes it after.
        with state.lock:
            token.num_uses -= 1
            last_use = token.num_uses == 0
        if last_use:
            try:
                return _route(state, request)
            finally:
                tokens.revoke_token(state, token.id)
    return _route(state, request)


def _route(state: State, request: Request) -> Response:
    path = request.path
    if not path.startswith("sys/internal/ui/mounts/"):
        system.check_acl(state, request)
    if path.startswith("sys/wrapping/"):
        return wrapping.handle(state, request, path[len("sys/wrapping/") :])
    if path.startswith("sys/leases/"):
        return leases.handle(state, request, path[len("sys/leases/") :])
    if path.startswith(("sys/renew", "sys/revoke")):
        action, _, rest = path[len("sys/") :].partition("/")
        return leases.handle(state, request, f"{action}/{rest}" if rest else action)
    if path.startswith("sys/"):
        return system.handle(state, request, path[len("sys/") :])
    if path.startswith("auth/token/"):
        return tokens.handle(state, request, path[len("auth/token/") :])
    if path.startswith("auth/"):
        mount = state.find_mount(path[len("auth/") :], state.auth_mounts)
        if mount is None or mount.engine is None:
            raise no_route(path)
        return mount.engine.handle(request, path[len("auth/") + len(mount.path) :])  # type: ignore[no-any-return]
    mount = state.find_mount(path)
    if mount is None or mount.engine is None:
        raise no_route(path)
    return mount.engine.handle(request, path[len(mount.path) :])  # type: ignore[no-any-return]
