"""sys/*: health, seal-status, mounts, auth mounts, policies, the UI mounts preflight.

sys/health and sys/seal-status are unauthenticated and answer while sealed (section 1);
sys/mounts answers with each mount both under data and at the top level, as Vault's
injectDataIntoTopRoutes does.
"""

from __future__ import annotations

import time
from typing import Any

from tests.vaultserver import acl
from tests.vaultserver.state import Mount, State
from tests.vaultserver.wire import (
    PERMISSION_DENIED,
    Request,
    Response,
    VaultError,
    as_list,
    bad_request,
    base62,
    envelope,
    no_content,
    ok,
    parse_duration,
)

VERSION = "1.17.0"
HEALTH_CODES = {
    "activecode": 200,
    "standbycode": 429,
    "drsecondarycode": 472,
    "performancestandbycode": 473,
    "haunhealthycode": 474,
    "sealedcode": 503,
    "uninitcode": 501,
    "removedcode": 530,
}


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("", "1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise VaultError(400)


def health(state: State, method: str, query: dict[str, str]) -> Response:
    """GET|HEAD sys/health: the body travels with non-200 statuses too."""
    if method not in ("GET", "HEAD"):
        raise VaultError(405)
    codes = dict(HEALTH_CODES)
    for name in codes:
        if name in query:
            try:
                codes[name] = int(query[name])
            except ValueError:
                raise VaultError(400) from None
    standby_ok = _bool(query["standbyok"]) if "standbyok" in query else False
    perf_ok = _bool(query["perfstandbyok"]) if "perfstandbyok" in query else False
    mode = state.health_mode
    initialized = mode.get("initialized", True)
    sealed = state.sealed or not initialized
    body: dict[str, Any] = {
        "initialized": initialized,
        "sealed": sealed,
        "standby": mode.get("standby", False) or mode.get("performance_standby", False),
        "performance_standby": mode.get("performance_standby", False),
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "secondary" if mode.get("dr_secondary") else "disabled",
        "server_time_utc": int(time.time()),
        "version": VERSION,
        "enterprise": False,
    }
    if not sealed:
        body["cluster_name"] = state.cluster_name
        body["cluster_id"] = state.cluster_id
    body.update(echo_duration_ms=0, clock_skew_ms=0, replication_primary_canary_age_ms=0)
    if mode.get("removed"):
        body["removed_from_cluster"] = True
    # sys_health.go precedence: uninit, removed, sealed, HA unhealthy, DR, perf standby, standby.
    status = codes["activecode"]
    if not initialized:
        status = codes["uninitcode"]
    elif mode.get("removed"):
        status = codes["removedcode"]
    elif sealed:
        status = codes["sealedcode"]
    elif mode.get("ha_unhealthy"):
        status = codes["haunhealthycode"]
    elif mode.get("dr_secondary"):
        status = codes["drsecondarycode"]
    elif mode.get("performance_standby"):
        status = codes["activecode"] if perf_ok else codes["performancestandbycode"]
    elif mode.get("standby"):
        status = codes["activecode"] if standby_ok else codes["standbycode"]
    return Response(status, body)


def seal_status(state: State, method: str) -> Response:
    if method != "GET":
        raise VaultError(405)
    body: dict[str, Any] = {
        "type": "shamir",
        "initialized": True,
        "sealed": state.sealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": VERSION,
        "build_date": "2024-06-10T10:11:34Z",
        "migration": False,
        "recovery_seal": False,
        "storage_type": "inmem",
    }
    if not state.sealed:
        body["cluster_name"] = state.cluster_name
        body["cluster_id"] = state.cluster_id
    return Response(200, body)


def add_mount(state: State, table: dict[str, Mount], path: str, kind: str, options: Any) -> Mount:
    """Enable an engine; the engine object is built by the server's factory."""
    from tests.vaultserver.engines import build_engine

    key = path.strip("/") + "/"
    with state.lock:
        if key in table:
            raise bad_request(f"path is already in use at {key}")
        if kind == "kv" and not (options or {}).get("version"):
            options = {"version": "1"}
        if kind == "kv-v2":
            kind, options = "kv", {"version": "2"}
        mount = Mount(path=key, type=kind, options=dict(options) if options else None)
        mount.accessor = f"{'auth_' if table is state.auth_mounts else ''}{kind}_{base62(8)}"
        mount.engine = build_engine(state, mount)
        table[key] = mount
        return mount


def _mounts_listing(table: dict[str, Mount]) -> Response:
    data = {path: mount.info() for path, mount in sorted(table.items())}
    body = envelope(data)
    # injectDataIntoTopRoutes: each mount is also a top-level key.
    body.update(data)
    return Response(200, body)


def handle(state: State, request: Request, rest: str) -> Response:
    """Authenticated sys/ paths other than leases."""
    op = request.operation
    head, _, tail = rest.partition("/")
    if head in ("mounts", "auth"):
        table = state.mounts if head == "mounts" else state.auth_mounts
        if not tail:
            if op != "read":
                raise VaultError(405, "unsupported operation")
            return _mounts_listing(table)
        if op == "update":
            kind = request.data.get("type")
            if not kind:
                raise bad_request("backend type must be specified as a string")
            options = request.data.get("options")
            mount = add_mount(state, table, tail, str(kind), options)
            config = request.data.get("config") or {}
            mount.default_lease_ttl = parse_duration(config.get("default_lease_ttl"))
            mount.max_lease_ttl = parse_duration(config.get("max_lease_ttl"))
            return no_content()
        if op == "delete":
            with state.lock:
                table.pop(tail.strip("/") + "/", None)
            return no_content()
        if op == "read":
            found = table.get(tail.strip("/") + "/")
            if found is None:
                raise bad_request(f"No secret engine mount at {tail.strip('/')}/")
            mount = found
            return ok(mount.info())
    if head in ("policies", "policy"):
        name = tail.removeprefix("acl/") if head == "policies" else tail
        return _policy(state, request, name)
    if head == "capabilities-self" and op == "update":
        return _capabilities(state, request)
    if head == "internal" and tail.startswith("ui/mounts/"):
        return _ui_mount(state, request, tail[len("ui/mounts/") :])
    raise VaultError(404, f'no handler for route "sys/{rest}". route entry not found.')


def _policy(state: State, request: Request, name: str) -> Response:
    op = request.operation
    with state.lock:
        if op == "list" or (op == "read" and not name):
            names = sorted([*state.policies, "root"])
            return ok({"keys": names, "policies": names})
        if op == "read":
            if name == "root":
                return ok({"name": "root", "rules": "", "policy": ""})
            policy = state.policies.get(name)
            if policy is None:
                raise VaultError(404)
            text = acl.render_policy(policy)
            return ok({"name": name, "rules": text, "policy": text})
        if op == "update":
            document = request.data.get("policy") or request.data.get("rules")
            if not document:
                raise bad_request("'policy' parameter not supplied or empty")
            state.policies[name] = acl.parse_policy(str(document))
            return no_content()
        if op == "delete":
            if name in ("root", "default"):
                raise bad_request(f'cannot delete "{name}" policy')
            state.policies.pop(name, None)
            return no_content()
    raise VaultError(405, "unsupported operation")


def _capabilities(state: State, request: Request) -> Response:
    """sys/capabilities-self: per path, sorted; ["root"] for root, ["deny"] for nothing."""
    paths = as_list(request.data.get("paths") or request.data.get("path"))
    data: dict[str, Any] = {}
    with state.lock:
        names = request.token_entry.policies
        for path in paths:
            caps = acl.capabilities(state.policies, names, path.strip("/"))
            data[path] = ["root"] if "root" in caps else sorted(caps - {"deny"}) or ["deny"]
    if len(paths) == 1:
        data["capabilities"] = data[paths[0]]
    return ok(data)


def _ui_mount(state: State, request: Request, path: str) -> Response:
    """KV version detection: the longest mount, or 403 if none / no access (section 5.5)."""
    with state.lock:
        mount = state.find_mount(path)
        token = request.token_entry
        if mount is None or not acl.may_see_mount(state.policies, token.policies, mount.path):
            raise VaultError(
                403,
                "preflight capability check returned 403, please ensure client's policies "
                f'grant access to path "{path.rstrip("/")}/"',
            )
        return ok({**mount.info(), "path": mount.path})


def check_acl(state: State, request: Request) -> None:
    """403 permission denied when the token's policies do not allow the operation."""
    with state.lock:
        names = request.token_entry.policies
        if not acl.allowed(state.policies, names, request.path, request.operation):
            raise VaultError(403, PERMISSION_DENIED)
