"""The server's memory: mounts, policies, tokens and leases, behind one lock.

One coarse re-entrant lock keeps the model simple: a request handler, the reaper thread
and a test's helper calls never see half an update. Fault delays are applied outside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.vaultserver.acl import DEFAULT_POLICY, Policy
from tests.vaultserver.wire import SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, base62, new_uuid


@dataclass
class Mount:
    """A secrets engine or auth method mount; `engine` holds its own state."""

    path: str  # with trailing slash, e.g. "secret/"
    type: str
    options: dict[str, str] | None = None
    description: str = ""
    engine: Any = None
    accessor: str = ""
    uuid: str = field(default_factory=new_uuid)
    default_lease_ttl: int = 0
    max_lease_ttl: int = 0

    def info(self) -> dict[str, Any]:
        """mountInfo() as sys/mounts and sys/internal/ui/mounts give it."""
        return {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.default_lease_ttl,
                "force_no_cache": False,
                "max_lease_ttl": self.max_lease_ttl,
            },
            "deprecation_status": "supported",
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": f"v1.17.0+builtin.{self.type}",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }

    @property
    def ttl_default(self) -> int:
        return self.default_lease_ttl or SYSTEM_DEFAULT_TTL

    @property
    def ttl_max(self) -> int:
        return self.max_lease_ttl or SYSTEM_MAX_TTL


@dataclass
class Token:
    id: str
    accessor: str
    policies: list[str]
    path: str
    display_name: str
    creation_time: float
    ttl: int  # creation TTL; 0 = never expires (root)
    max_ttl: int  # effective max from issue time; 0 = none
    explicit_max_ttl: int = 0
    period: int = 0
    renewable: bool = True
    orphan: bool = False
    parent: str | None = None
    meta: dict[str, str] | None = None
    num_uses: int = 0
    expire_time: float | None = None
    last_renewal: float | None = None
    entity_id: str = ""
    # Called before a renew, for auth methods that re-check their login (AWS IAM).
    renew_check: Callable[[Token], None] | None = None


@dataclass
class Lease:
    id: str
    path: str  # the request path that made it, e.g. database/creds/app
    issue_time: float
    expire_time: float
    ttl: int
    default_ttl: int
    max_ttl: int
    renewable: bool
    token_id: str | None
    revoke: Callable[[Lease], None]
    renew: Callable[[Lease, int], None] | None = None
    last_renewal: float | None = None
    failed_revocations: int = 0
    retry_revocation_at: float = 0.0  # the reaper's backoff after a failed revocation
    secret: dict[str, Any] = field(default_factory=dict)


class State:
    """Everything the server knows; guarded by `lock`."""

    def __init__(self, root_token: str) -> None:
        self.lock = threading.RLock()
        self.sealed = False
        # What sys/health reports besides the seal (set_health): initialized, standby,
        # performance_standby, dr_secondary, ha_unhealthy, removed.
        self.health_mode: dict[str, bool] = {}
        self.wrapped: dict[str, dict[str, Any]] = {}  # wrapping token -> wrapped answer
        self.root_token = root_token
        self.cluster_name = f"vault-cluster-{base62(8).lower()}"
        self.cluster_id = new_uuid()
        self.started = time.time()
        self.policies: dict[str, Policy] = {"default": dict(DEFAULT_POLICY)}
        self.tokens: dict[str, Token] = {}
        self.leases: dict[str, Lease] = {}
        self.mounts: dict[str, Mount] = {}
        self.auth_mounts: dict[str, Mount] = {}
        # Jobs the reaper runs besides expiry, e.g. static role rotation; get time.time().
        self.periodic: list[Callable[[float], None]] = []

    def token_by_accessor(self, accessor: str) -> Token | None:
        return next((t for t in self.tokens.values() if t.accessor == accessor), None)

    def find_mount(self, path: str, table: dict[str, Mount] | None = None) -> Mount | None:
        """The longest mount whose path prefixes `path` (with or without a trailing slash)."""
        table = self.mounts if table is None else table
        probe = path if path.endswith("/") else path + "/"
        best: Mount | None = None
        for mount_path, mount in table.items():
            if probe.startswith(mount_path) and (best is None or len(mount_path) > len(best.path)):
                best = mount
        return best
