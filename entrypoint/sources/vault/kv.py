"""What kind of mount a path lives on, and how each kind is read.

KV v1 and v2 are told apart by asking Vault (``sys/internal/ui/mounts/<path>``), never by
guessing from the path; the answer is cached per mount. For v2 the ``data/`` segment is
added here, so users write ``kv/app/db`` whatever the version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from entrypoint.errors import ConfigError, SecretNotFound
from entrypoint.sources.base import Fetched, Refresh, to_secrets

# Sent with every read of a non-KV path (dynamic credentials): Vault Agent and Proxy key
# their lease cache on the whole request, headers included, so each read is a new one.
FRESH_HEADER = "X-Entrypoint-Read"


@dataclass(frozen=True)
class Mount:
    path: str  # with a trailing slash, as Vault writes it: "kv/"
    type: str  # "kv", "database", "aws", ... ("" when Vault would not say)
    version: int | None = None  # 1 or 2 for KV mounts

    @property
    def label(self) -> str:
        if self.version:
            return f"KV v{self.version} mount {self.path}"
        return f"{self.type or 'unknown'} mount {self.path}"

    @classmethod
    def from_data(cls, data: Mapping[str, Any], path: str,
                  namespace: str | None = None) -> Mount:
        """``namespace`` is VAULT_NAMESPACE. For a mount in a child namespace of it
        (path ``team/kv/app`` with VAULT_NAMESPACE=org), Vault answers the mount's full
        path from the root namespace, ``org/team/kv/`` (sys/internal/ui/mounts writes
        ``me.Namespace().Path + me.Path`` when the namespaces differ): the part we are
        already in is cut, leaving ``team/kv/``, which our path starts with."""
        mount_path = str(data.get("path") or "")
        prefix = (namespace or "").strip("/")
        if prefix and mount_path.startswith(prefix + "/"):
            mount_path = mount_path[len(prefix) + 1:]
        if not mount_path or not (path + "/").startswith(mount_path):
            # Old servers without the field: treat the first segment as the mount.
            mount_path = path.split("/", 1)[0] + "/"
        kind = str(data.get("type") or "")
        version = None
        if kind in ("kv", "generic"):
            options = data.get("options") or {}
            # options.version is a string; null or empty means v1.
            version = 2 if str(options.get("version") or "1") == "2" else 1
        return cls(path=mount_path, type=kind, version=version)


class MountTable:
    """Mounts seen so far; one question to Vault per mount, not per path."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace
        self._mounts: dict[str, Mount] = {}
        self._guard = threading.Lock()
        # One lock per first path segment: concurrent first reads of one mount ask once,
        # while reads under other mounts (a slow database/creds) do not wait for them.
        self._locks: dict[str, threading.Lock] = {}

    def cached(self, path: str) -> Mount | None:
        with self._guard:
            mounts = list(self._mounts.items())
        candidates = [m for p, m in mounts if (path + "/").startswith(p)]
        return max(candidates, key=lambda m: len(m.path)) if candidates else None

    def find(self, path: str, ask: Callable[[str], Mapping[str, Any] | None]) -> Mount:
        """``ask(path)`` returns the data of sys/internal/ui/mounts/<path>, or None when the
        server does not have that endpoint (then the path is read as a generic secret)."""
        with self._guard:
            lock = self._locks.setdefault(path.split("/", 1)[0], threading.Lock())
        with lock:
            mount = self.cached(path)
            if mount is not None:
                return mount
            data = ask(path)
            if data is None:
                return Mount(path=path.split("/", 1)[0] + "/", type="")
            mount = Mount.from_data(data, path, self.namespace)
            with self._guard:
                self._mounts[mount.path] = mount
            return mount


def api_path(path: str) -> str:
    return "/v1/" + quote(path, safe="/")


def v2_data_path(mount: Mount, rest: str) -> str:
    return f"{mount.path}data/{rest}"


def deleted_version_error(path: str, version: int | None, body: Any) -> ConfigError | None:
    """A KV v2 404 whose body says the version exists but was deleted or destroyed."""
    data = body.get("data") if isinstance(body, dict) else None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        return None
    number = metadata.get("version", version)
    which = f"version {number}" if version is not None else f"the latest version ({number})"
    ref = f"vault:{path}" + (f"?version={version}" if version is not None else "")
    if metadata.get("destroyed"):
        return ConfigError(f"{ref}: {which} of {path} was destroyed",
                           hint="pin another version with ?version=N, or write a new one")
    if metadata.get("deletion_time"):
        return ConfigError(f"{ref}: {which} of {path} was deleted",
                           hint="undelete it (vault kv undelete) or pin another version")
    return None


def kv2_fetched(path: str, response: Any, started: float) -> Fetched:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise SecretNotFound(f"vault:{path}: Vault returned no data")
    metadata = data.get("metadata") or {}
    version = metadata.get("version")
    return Fetched(data=to_secrets(data["data"]), kind="kv2", refresh=Refresh.POLL,
                   version=int(version) if version is not None else None, fetched_at=started)


def kv1_fetched(path: str, response: Any, started: float) -> Fetched:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise SecretNotFound(f"vault:{path}: Vault returned no data")
    return Fetched(data=to_secrets(data), kind="kv1", refresh=Refresh.POLL,
                   fetched_at=started)


def leased_fetched(path: str, mount: Mount, response: Any, started: float) -> Fetched:
    """Anything else readable: dynamic credentials (a lease) or database static roles."""
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise SecretNotFound(f"vault:{path}: Vault returned no data")
    rest = path[len(mount.path):]
    if mount.type == "database" and rest.startswith("static-creds/"):
        ttl = data.get("ttl")
        return Fetched(data=to_secrets(data), kind="static-creds", refresh=Refresh.ROTATED,
                       ttl=float(ttl) if isinstance(ttl, int | float) else None,
                       fetched_at=started)
    lease_id = str(response.get("lease_id") or "") or None
    if lease_id is None:
        # A stored secret (cubbyhole, a mount Vault would not name) may hold a "ttl" of
        # its own: data, not a promise to issue a new value.
        ttl = None if mount.type in STORED else ttl_in_data(data)
        if ttl is not None:
            # A new value at each read, valid ttl s, with no lease (identity/oidc/token,
            # AWS STS on some versions, PKI): replaced before it ends, never polled.
            return Fetched(data=to_secrets(data), kind="ttl", refresh=Refresh.TTL, ttl=ttl,
                           fetched_at=started)
        # Readable but not leased (a generic or unknown mount): static, like KV v1.
        return Fetched(data=to_secrets(data), kind="kv1", refresh=Refresh.POLL,
                       fetched_at=started)
    return Fetched(data=to_secrets(data), kind="leased", refresh=Refresh.LEASE,
                   lease_id=lease_id,
                   lease_duration=float(response.get("lease_duration") or 0),
                   renewable=bool(response.get("renewable")), fetched_at=started)


STORED = frozenset({"", "cubbyhole", "kv", "generic"})


def ttl_in_data(data: dict[str, Any]) -> float | None:
    """Seconds a lease-less answer stays valid, from its own ``ttl`` (seconds) or
    ``expiration`` (Unix time, as PKI gives it); None when it says neither."""
    ttl = data.get("ttl")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
        return float(ttl)
    expiration = data.get("expiration")
    if isinstance(expiration, int | float) and not isinstance(expiration, bool):
        # Wall clock against wall clock: the answer arrived just now.
        left = float(expiration) - time.time()
        return left if left > 0 else None
    return None
