"""``entrypoint check`` before any path is read: is Vault reachable, and does the login work?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.errors import EntrypointError
from entrypoint.sources.base import Step

if TYPE_CHECKING:
    from entrypoint.sources.vault.source import VaultSource


def preflight(source: VaultSource) -> list[Step]:
    """The server row, then the login row; stops at the first that fails."""
    # The check's token and leases are its own: revoked at close whatever
    # revoke_on_exit says, so a check leaves nothing behind.
    source.revoke_on_close = True
    source.keeper.revoke_on_exit = True
    addr = source.client.connection.addr
    try:
        version = source.health().get("version")
    except EntrypointError as exc:
        return [Step("vault", "server", "", exc)]
    steps = [Step("vault", "server", addr + (f" ({version})" if version else ""))]
    try:
        source.login()
    except EntrypointError as exc:
        return [*steps, Step("login", "login", "", exc)]
    detail = source.method.describe()
    current = source.keeper.current
    if current is not None:
        ttl = f"ttl {current.ttl:g}s" if current.ttl else "no expiry"
        detail += f"; {ttl}; policies {','.join(current.policies) or 'none'}"
    return [*steps, Step("login", "login", detail)]
