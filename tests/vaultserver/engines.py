"""Which engine object serves a mount of a given type."""

from __future__ import annotations

from typing import Any

from tests.vaultserver.state import Mount, State


class TokenMount:
    """auth/token/ is served by tokens.handle; the mount object only lists it."""


def build_engine(state: State, mount: Mount) -> Any:
    """The engine for `mount.type`; imports are local so each module stays optional."""
    if mount.type == "kv":
        from tests.vaultserver.kv import KVv1, KVv2

        version = (mount.options or {}).get("version", "1")
        return KVv2(mount) if str(version) == "2" else KVv1(mount)
    if mount.type == "database":
        from tests.vaultserver.database import DatabaseEngine

        return DatabaseEngine(state, mount)
    if mount.type == "aws":
        from tests.vaultserver.aws_iam import AwsAuth

        return AwsAuth(state, mount)
    if mount.type == "approle":
        from tests.vaultserver.logins import AppRoleAuth

        return AppRoleAuth(state, mount)
    if mount.type == "kubernetes":
        from tests.vaultserver.logins import KubernetesAuth

        return KubernetesAuth(state, mount)
    if mount.type == "token":
        return TokenMount()
    return None
