"""The KV secrets engine, version 1 (passthrough) and version 2 (versioned), section 5.

KV v2 answers a soft-deleted or destroyed version with 404 and the *normal* envelope
(data.data null, metadata filled), which hvac's raise_on_deleted_version=False relies on;
a v1-style path on a v2 mount is 404 with the "Invalid path" warning and no errors key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.vaultserver.state import Mount
from tests.vaultserver.wire import (
    Request,
    Response,
    VaultError,
    bad_request,
    envelope,
    go_duration,
    no_content,
    ok,
    parse_duration,
    rfc3339nano,
)

INVALID_V2_PATH = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate "
    "API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
)
ROOT_V2_PATH = "Non-listing operations on the root of a K/V v2 mount are not supported."


def _list_keys(paths: list[str], prefix: str) -> Response:
    """LIST: the next path segment under `prefix`, directories with a slash; 404 if none."""
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    keys = set()
    for path in paths:
        if path.startswith(prefix):
            head, slash, _ = path[len(prefix) :].partition("/")
            keys.add(head + slash)
    if not keys:
        raise VaultError(404)
    return ok({"keys": sorted(keys)}, mount_type="kv")


class KVv1:
    """Passthrough: a flat map per path; reads carry the mount's lease_duration."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.data: dict[str, dict[str, Any]] = {}

    def write(self, path: str, data: dict[str, Any]) -> None:
        self.data[path.strip("/")] = dict(data)

    def handle(self, request: Request, rest: str) -> Response:
        path = rest.strip("/")
        if request.operation == "list":
            return _list_keys(list(self.data), path)
        if request.operation == "read":
            value = self.data.get(path)
            if value is None:
                raise VaultError(404)
            ttl = self.mount.ttl_default
            for key in ("ttl", "lease"):
                if key in value:
                    ttl = parse_duration(value[key], key)
            return ok(dict(value), lease_duration=ttl, mount_type="kv")
        if request.operation == "update":
            if not request.data:
                raise bad_request("missing data fields")
            self.write(path, request.data)
            return no_content()
        if request.operation == "delete":
            self.data.pop(path, None)
            return no_content()
        raise VaultError(405, "unsupported operation")


@dataclass
class Version:
    data: dict[str, Any] | None
    created_time: float
    deletion_time: float | None = None
    destroyed: bool = False

    def meta(self) -> dict[str, Any]:
        return {
            "created_time": rfc3339nano(self.created_time),
            "deletion_time": rfc3339nano(self.deletion_time),
            "destroyed": self.destroyed,
        }

    def deleted(self, now: float) -> bool:
        return self.destroyed or (self.deletion_time is not None and self.deletion_time <= now)


@dataclass
class Metadata:
    created_time: float
    updated_time: float
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    versions: dict[int, Version] = field(default_factory=dict)


class KVv2:
    """Versioned KV: data/, metadata/, delete/, undelete/, destroy/, config."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.keys: dict[str, Metadata] = {}
        self.max_versions = 0
        self.cas_required = False

    def write(self, path: str, data: dict[str, Any], cas: int | None = None) -> dict[str, Any]:
        path = path.strip("/")
        now = time.time()
        meta = self.keys.get(path)
        if meta is None:
            meta = Metadata(created_time=now, updated_time=now)
        if cas is None and (self.cas_required or meta.cas_required):
            raise bad_request("check-and-set parameter required for this call")
        if cas is not None and cas != meta.current_version:
            raise bad_request("check-and-set parameter did not match the current version")
        self.keys[path] = meta
        meta.current_version += 1
        meta.updated_time = now
        meta.oldest_version = meta.oldest_version or 1
        meta.versions[meta.current_version] = Version(dict(data), now)
        limit = meta.max_versions or self.max_versions
        while limit and len(meta.versions) > limit:
            oldest = min(meta.versions)
            del meta.versions[oldest]
            meta.oldest_version = min(meta.versions)
        return self._version_meta(meta, meta.current_version)

    def _version_meta(self, meta: Metadata, number: int) -> dict[str, Any]:
        return {
            **meta.versions[number].meta(),
            "custom_metadata": meta.custom_metadata,
            "version": number,
        }

    def handle(self, request: Request, rest: str) -> Response:
        kind, _, path = rest.partition("/")
        path = path.strip("/")
        op = request.operation
        if kind == "config":
            return self._config(request)
        if kind not in ("data", "metadata", "delete", "undelete", "destroy"):
            return Response(404, envelope(None, warnings=[INVALID_V2_PATH]))
        if kind == "metadata" and op == "list":
            return _list_keys(list(self.keys), path)
        if not path:
            return Response(404, envelope(None, warnings=[ROOT_V2_PATH]))
        if kind == "data":
            return self._data(request, path)
        if kind == "metadata":
            return self._metadata(request, path)
        if op != "update":
            raise VaultError(405, "unsupported operation")
        return self._versions_op(kind, path, request.data.get("versions"))

    def _data(self, request: Request, path: str) -> Response:
        op = request.operation
        meta = self.keys.get(path)
        if op == "read":
            if meta is None:
                raise VaultError(404)
            try:
                number = int(request.data.get("version") or 0) or meta.current_version
            except (TypeError, ValueError):
                raise bad_request("error parsing version") from None
            version = meta.versions.get(number)
            if version is None:
                raise VaultError(404)
            body = {"data": None, "metadata": self._version_meta(meta, number)}
            if version.deleted(time.time()):
                return Response(404, envelope(body))
            body["data"] = dict(version.data or {})
            return ok(body, mount_type="kv")
        if op == "update":
            data = request.data.get("data")
            if not isinstance(data, dict):
                raise bad_request("no data provided")
            options = request.data.get("options") or {}
            cas = options.get("cas")
            try:
                cas_value = None if cas is None else int(cas)
            except (TypeError, ValueError):
                raise bad_request("error parsing check-and-set parameter") from None
            return ok(self.write(path, data, cas_value), mount_type="kv")
        if op == "patch":
            current = meta.versions.get(meta.current_version) if meta else None
            if meta is None or current is None or current.deleted(time.time()):
                raise VaultError(404)
            patch = request.data.get("data")
            if not isinstance(patch, dict):
                raise bad_request("no data provided")
            merged = dict(current.data or {})
            for key, value in patch.items():
                if value is None:
                    merged.pop(key, None)  # JSON merge patch: null removes the key
                else:
                    merged[key] = value
            return ok(self.write(path, merged), mount_type="kv")
        if op == "delete":
            if meta is not None and meta.current_version in meta.versions:
                version = meta.versions[meta.current_version]
                version.deletion_time = version.deletion_time or time.time()
            return no_content()
        raise VaultError(405, "unsupported operation")

    def _metadata(self, request: Request, path: str) -> Response:
        op = request.operation
        meta = self.keys.get(path)
        if op == "read":
            if meta is None:
                raise VaultError(404)
            return ok(
                {
                    "cas_required": meta.cas_required,
                    "created_time": rfc3339nano(meta.created_time),
                    "current_version": meta.current_version,
                    "custom_metadata": meta.custom_metadata,
                    "delete_version_after": go_duration(meta.delete_version_after),
                    "max_versions": meta.max_versions,
                    "oldest_version": meta.oldest_version,
                    "updated_time": rfc3339nano(meta.updated_time),
                    "versions": {str(n): v.meta() for n, v in sorted(meta.versions.items())},
                },
                mount_type="kv",
            )
        if op == "update":
            now = time.time()
            meta = meta or self.keys.setdefault(path, Metadata(created_time=now, updated_time=now))
            data = request.data
            if data.get("max_versions") is not None:
                meta.max_versions = int(data["max_versions"])
            if data.get("cas_required") is not None:
                meta.cas_required = bool(data["cas_required"])
            if data.get("custom_metadata") is not None:
                meta.custom_metadata = {k: str(v) for k, v in data["custom_metadata"].items()}
            if data.get("delete_version_after") is not None:
                meta.delete_version_after = parse_duration(data["delete_version_after"])
            return no_content()
        if op == "delete":
            self.keys.pop(path, None)
            return no_content()
        raise VaultError(405, "unsupported operation")

    def _versions_op(self, kind: str, path: str, versions: Any) -> Response:
        if not versions:
            raise bad_request("no version number provided")
        meta = self.keys.get(path)
        if meta is None:
            return no_content()
        for number in (int(v) for v in versions):
            version = meta.versions.get(number)
            if version is None:
                continue
            if kind == "delete":
                version.deletion_time = version.deletion_time or time.time()
            elif kind == "undelete" and not version.destroyed:
                version.deletion_time = None
            elif kind == "destroy":
                version.destroyed = True
                version.data = None
        return no_content()

    def _config(self, request: Request) -> Response:
        if request.operation == "read":
            return ok(
                {
                    "cas_required": self.cas_required,
                    "delete_version_after": "0s",
                    "max_versions": self.max_versions,
                },
                mount_type="kv",
            )
        if request.operation == "update":
            if request.data.get("max_versions") is not None:
                self.max_versions = int(request.data["max_versions"])
            if request.data.get("cas_required") is not None:
                self.cas_required = bool(request.data["cas_required"])
            return no_content()
        raise VaultError(405, "unsupported operation")
