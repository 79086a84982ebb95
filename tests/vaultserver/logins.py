"""AppRole and Kubernetes logins (reference section 4): the shapes a client sees.

AppRole: role/<name> (token_policies, token_ttl, token_max_ttl, token_period,
bind_secret_id, secret_id_ttl), role/<name>/role-id, role/<name>/secret-id, login.
Kubernetes: role/<name> (bound_service_account_names/namespaces, token_policies, ttl)
and login; no TokenReview: a JWT is accepted when a test registered it with
`add_jwt(jwt, service_account_name, namespace)` (or POST auth/kubernetes/test-jwt).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.vaultserver import tokens
from tests.vaultserver.state import Mount, State
from tests.vaultserver.wire import (
    PERMISSION_DENIED,
    Request,
    Response,
    VaultError,
    as_bool,
    as_list,
    bad_request,
    new_uuid,
    no_content,
    ok,
    parse_duration,
)


def _token_fields(data: dict[str, Any], role: dict[str, Any]) -> None:
    if "token_policies" in data or "policies" in data:
        role["token_policies"] = as_list(data.get("token_policies", data.get("policies")))
    for field, legacy in (("token_ttl", "ttl"), ("token_max_ttl", "max_ttl"),
                          ("token_period", "period")):
        if field in data or legacy in data:
            role[field] = parse_duration(data.get(field, data.get(legacy)), field)


def _issue(state: State, mount: Mount, role: dict[str, Any], display: str,
           meta: dict[str, str]) -> Response:
    token = tokens.new_token(
        state, role["token_policies"], ttl=role["token_ttl"], max_ttl=role["token_max_ttl"],
        period=role["token_period"], path=f"auth/{mount.path}login",
        display_name=display, meta=meta, orphan=True,
    )
    return ok(None, auth=tokens.auth_block(token))


def _no_route(mount: Mount, rest: str) -> VaultError:
    return VaultError(404, f'no handler for route "auth/{mount.path}{rest}". '
                      "route entry not found.")


class AppRoleAuth:
    def __init__(self, state: State, mount: Mount) -> None:
        self.state = state
        self.mount = mount
        self.roles: dict[str, dict[str, Any]] = {}
        self.secret_ids: dict[str, dict[str, Any]] = {}  # secret_id -> role name, expiry

    def add_role(self, name: str, policies: list[str], ttl: int = 0, max_ttl: int = 0,
                 bind_secret_id: bool = True) -> tuple[str, str | None]:
        """A role; returns (role_id, a fresh secret_id or None when not bound)."""
        with self.state.lock:
            role = self._write(name, {"token_policies": policies, "token_ttl": ttl,
                                      "token_max_ttl": max_ttl,
                                      "bind_secret_id": bind_secret_id})
            secret = self._new_secret_id(name)["secret_id"] if bind_secret_id else None
            return role["role_id"], secret

    def _write(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        role = self.roles.setdefault(name, {
            "role_id": new_uuid(), "bind_secret_id": True, "secret_id_ttl": 0,
            "token_policies": [], "token_ttl": 0, "token_max_ttl": 0, "token_period": 0,
        })
        _token_fields(data, role)
        if "bind_secret_id" in data:
            role["bind_secret_id"] = as_bool(data["bind_secret_id"], default=True)
        if "secret_id_ttl" in data:
            role["secret_id_ttl"] = parse_duration(data["secret_id_ttl"], "secret_id_ttl")
        return role

    def _new_secret_id(self, name: str) -> dict[str, Any]:
        secret_id = new_uuid()
        ttl = self.roles[name]["secret_id_ttl"]
        self.secret_ids[secret_id] = {"role": name, "expires": time.time() + ttl if ttl else None}
        return {"secret_id": secret_id, "secret_id_accessor": new_uuid(),
                "secret_id_ttl": ttl, "secret_id_num_uses": 0}

    def handle(self, request: Request, rest: str) -> Response:
        op = request.operation
        if rest == "login" and op == "update":
            return self._login(request.data)
        parts = rest.strip("/").split("/")
        with self.state.lock:
            if parts[0] != "role":
                raise _no_route(self.mount, rest)
            if len(parts) == 1 and op == "list":
                if not self.roles:
                    raise VaultError(404)
                return ok({"keys": sorted(self.roles)})
            name = parts[1] if len(parts) > 1 else ""
            tail = "/".join(parts[2:])
            role = self.roles.get(name)
            if tail == "" and op == "update":
                self._write(name, request.data)
                return no_content()
            if tail == "" and op == "delete":
                self.roles.pop(name, None)
                return no_content()
            if role is None:
                raise VaultError(404) if op == "read" else bad_request(
                    f'role "{name}" does not exist')
            if tail == "" and op == "read":
                return ok({k: v for k, v in role.items() if k != "role_id"})
            if tail == "role-id" and op == "read":
                return ok({"role_id": role["role_id"]})
            if tail == "role-id" and op == "update":
                role["role_id"] = str(request.data.get("role_id") or role["role_id"])
                return no_content()
            if tail == "secret-id" and op == "update":
                return ok(self._new_secret_id(name))
        raise _no_route(self.mount, rest)

    def _login(self, data: dict[str, Any]) -> Response:
        role_id = data.get("role_id")
        if not role_id:
            raise bad_request("missing role_id")
        with self.state.lock:
            name, role = next(((n, r) for n, r in self.roles.items()
                               if r["role_id"] == role_id), ("", None))
            if role is None:
                raise bad_request("invalid role or secret ID")
            if role["bind_secret_id"]:
                secret_id = data.get("secret_id")
                if not secret_id:
                    raise bad_request("missing secret_id")
                entry = self.secret_ids.get(str(secret_id))
                expired = entry is not None and entry["expires"] is not None and \
                    entry["expires"] <= time.time()
                if entry is None or entry["role"] != name or expired:
                    raise bad_request("invalid role or secret ID")
            return _issue(self.state, self.mount, role, "approle", {"role_name": name})


class KubernetesAuth:
    def __init__(self, state: State, mount: Mount) -> None:
        self.state = state
        self.mount = mount
        self.roles: dict[str, dict[str, Any]] = {}
        self.jwts: dict[str, dict[str, str]] = {}

    def add_jwt(self, jwt: str, service_account_name: str, namespace: str) -> None:
        with self.state.lock:
            self.jwts[jwt] = {"name": service_account_name, "namespace": namespace,
                              "uid": new_uuid()}

    def add_role(self, name: str, service_accounts: list[str], namespaces: list[str],
                 policies: list[str], ttl: int = 0) -> None:
        with self.state.lock:
            self._write(name, {"bound_service_account_names": service_accounts,
                               "bound_service_account_namespaces": namespaces,
                               "token_policies": policies, "token_ttl": ttl})

    def _write(self, name: str, data: dict[str, Any]) -> None:
        role = self.roles.setdefault(name, {
            "bound_service_account_names": [], "bound_service_account_namespaces": [],
            "token_policies": [], "token_ttl": 0, "token_max_ttl": 0, "token_period": 0,
        })
        for field in ("bound_service_account_names", "bound_service_account_namespaces"):
            if field in data:
                role[field] = as_list(data[field])
        _token_fields(data, role)

    def handle(self, request: Request, rest: str) -> Response:
        op = request.operation
        with self.state.lock:
            if rest == "login" and op == "update":
                return self._login(request.data)
            if rest == "config" and op == "update":
                return no_content()
            if rest == "test-jwt" and op == "update":  # lets another process register one
                jwt = str(request.data.get("jwt") or secrets.token_urlsafe(24))
                self.add_jwt(jwt, str(request.data.get("service_account_name", "default")),
                             str(request.data.get("namespace", "default")))
                return ok({"jwt": jwt})
            if rest.startswith("role/"):
                name = rest[len("role/") :].strip("/")
                if op == "update":
                    self._write(name, request.data)
                    return no_content()
                if op == "read":
                    if name not in self.roles:
                        raise VaultError(404)
                    return ok(dict(self.roles[name]))
                if op == "delete":
                    self.roles.pop(name, None)
                    return no_content()
        raise _no_route(self.mount, rest)

    def _login(self, data: dict[str, Any]) -> Response:
        name = str(data.get("role") or "")
        if not name:
            raise bad_request("missing role")
        if not data.get("jwt"):
            raise bad_request("missing jwt")
        role = self.roles.get(name)
        if role is None:
            raise bad_request(f'invalid role name "{name}"')
        account = self.jwts.get(str(data["jwt"]))
        if account is None:
            raise VaultError(403, PERMISSION_DENIED)
        names = role["bound_service_account_names"]
        spaces = role["bound_service_account_namespaces"]
        if "*" not in names and account["name"] not in names:
            raise bad_request("service account name not authorized")
        if "*" not in spaces and account["namespace"] not in spaces:
            raise bad_request("namespace not authorized")
        meta = {"role": name, "service_account_name": account["name"],
                "service_account_namespace": account["namespace"],
                "service_account_secret_name": "", "service_account_uid": account["uid"]}
        return _issue(self.state, self.mount, role, f"kubernetes-{account['namespace']}-"
                      f"{account['name']}", meta)
