"""The database secrets engine driving a real PostgreSQL (reference section 6).

config/<name>, roles/<name>, creds/<name> (a lease whose revocation and renewal run the
role's statements), static-roles/<name>, static-creds/<name>, rotate-role/<name>,
rotate-root/<name>. The SQL side is in postgres_sql.py.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import Any

import psycopg

from tests.vaultserver import leases
from tests.vaultserver.postgres_sql import (
    DEFAULT_CREATION,
    DEFAULT_RENEW,
    DEFAULT_ROOT_ROTATION,
    DEFAULT_ROTATION,
    PASSWORD_IN_URL,
    connect,
    default_revoke,
    expiration,
    new_password,
    run,
    statements,
)
from tests.vaultserver.state import Lease, Mount, State
from tests.vaultserver.wire import (
    Request,
    Response,
    VaultError,
    as_bool,
    as_list,
    bad_request,
    base62,
    multierror,
    no_content,
    ok,
    parse_duration,
    rfc3339nano,
)

log = logging.getLogger(__name__)


KNOWN_PATHS = {"config", "roles", "creds", "static-roles", "static-creds", "rotate-role",
               "rotate-root", "reset"}


class DatabaseEngine:
    min_rotation_period = 5  # Vault refuses shorter; a test may lower it

    def __init__(self, state: State, mount: Mount) -> None:
        self.state = state
        self.mount = mount
        self.connections: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {}
        self.static_roles: dict[str, dict[str, Any]] = {}
        state.periodic.append(self.rotate_due)

    def _run(self, db_name: str, templates: list[str], values: dict[str, str]) -> None:
        run(self.connections[db_name], templates, values)

    # -- helpers for tests -----------------------------------------------------------------

    def configure_postgres(self, postgres: Any, name: str, allowed_roles: str = "*") -> None:
        self._write_config(name, {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@{postgres.host}:"
                              f"{postgres.port}/postgres?sslmode=disable",
            "username": postgres.superuser,
            "password": postgres.superuser_password,
            "allowed_roles": allowed_roles,
        })

    def add_role(self, name: str, db_name: str = "pg", default_ttl: int = 3600,
                 max_ttl: int = 86400, creation_statements: list[str] | None = None,
                 revocation_statements: list[str] | None = None,
                 renew_statements: list[str] | None = None) -> None:
        with self.state.lock:
            self.roles[name] = {
                "db_name": db_name,
                "creation_statements": creation_statements or list(DEFAULT_CREATION),
                "revocation_statements": revocation_statements or [],
                "renew_statements": renew_statements or [],
                "rollback_statements": [],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            }

    def add_static_role(self, name: str, username: str, rotation_period: int,
                        db_name: str = "pg") -> None:
        self._write_static(name, {"db_name": db_name, "username": username,
                                  "rotation_period": rotation_period})

    def close(self) -> None:
        if self.rotate_due in self.state.periodic:
            self.state.periodic.remove(self.rotate_due)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: Request, rest: str) -> Response:
        kind, _, name = rest.partition("/")
        name = name.strip("/")
        op = request.operation
        with self.state.lock:
            tables = {"config": self.connections, "roles": self.roles,
                      "static-roles": self.static_roles}
            if op == "list" and kind in tables:
                if not tables[kind]:
                    raise VaultError(404)
                return ok({"keys": sorted(tables[kind])}, mount_type="database")
            if kind == "config":
                return self._config(request, name)
            if kind == "roles":
                return self._role(request, name)
            if kind == "static-roles":
                return self._static_role(request, name)
            if kind == "creds" and op == "read":
                return self._creds(request, name)
            if kind == "static-creds" and op == "read":
                return self._static_creds(name)
            if kind == "rotate-role" and op == "update":
                if name not in self.static_roles:
                    raise bad_request(f"no static role found for role name {name!r}")
                self._rotate(name)
                return no_content()
            if kind == "rotate-root" and op == "update":
                return self._rotate_root(name)
            if kind == "reset" and op == "update":
                return no_content()
        if kind in KNOWN_PATHS and name:
            raise VaultError(405, "unsupported operation")
        raise VaultError(
            404, f'no handler for route "{self.mount.path}{rest}". route entry not found.')

    def _config(self, request: Request, name: str) -> Response:
        if request.operation == "update":
            warnings = self._write_config(name, request.data)
            return ok(None, warnings=warnings) if warnings else no_content()
        config = self.connections.get(name)
        if request.operation == "read":
            if config is None:
                raise VaultError(404)
            return ok({
                "allowed_roles": config["allowed_roles"],
                "connection_details": {"connection_url": config["connection_url"],
                                       "username": config.get("username", "")},
                "password_policy": "",
                "plugin_name": config["plugin_name"],
                "plugin_version": "",
                "root_credentials_rotate_statements": config["root_rotation_statements"],
                "verify_connection": config["verify_connection"],
            }, mount_type="database")
        if request.operation == "delete":
            self.connections.pop(name, None)
            return no_content()
        raise VaultError(405, "unsupported operation")

    def _write_config(self, name: str, data: dict[str, Any]) -> list[str]:
        plugin = data.get("plugin_name")
        if not plugin:
            raise bad_request("empty plugin name")
        if plugin != "postgresql-database-plugin":
            raise bad_request(f"error creating database object: unknown plugin {plugin!r}")
        url = str(data.get("connection_url", ""))
        config = {
            "plugin_name": plugin,
            "connection_url": url,
            "username": str(data.get("username", "")),
            "password": str(data.get("password", "")),
            "allowed_roles": as_list(data.get("allowed_roles")),
            "verify_connection": as_bool(data.get("verify_connection"), default=True),
            "root_rotation_statements": statements(data.get("root_rotation_statements")),
        }
        previous = self.connections.get(name)
        self.connections[name] = config
        if config["verify_connection"]:
            try:
                with connect(self.connections[name]) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                if previous is None:
                    del self.connections[name]
                else:
                    self.connections[name] = previous
                raise bad_request(
                    f"error creating database object: error verifying connection: {exc}"
                ) from exc
        has_literal = "{{password}}" not in url and ":" in url.split("@")[0].split("//")[-1]
        return [PASSWORD_IN_URL] if has_literal else []

    def _role(self, request: Request, name: str) -> Response:
        op = request.operation
        role = self.roles.get(name)
        if op == "read":
            if role is None:
                raise VaultError(404)
            return ok(dict(role), mount_type="database")
        if op == "delete":
            self.roles.pop(name, None)
            return no_content()
        data = request.data
        if not data.get("db_name"):
            raise bad_request("empty database name attribute")
        creation = statements(data.get("creation_statements"))
        if not creation:
            raise bad_request("empty creation statements")
        default_ttl = parse_duration(data.get("default_ttl"), "default_ttl")
        max_ttl = parse_duration(data.get("max_ttl"), "max_ttl")
        if max_ttl and default_ttl > max_ttl:
            raise bad_request("ttl cannot be greater than max_ttl")
        self.add_role(name, str(data["db_name"]), default_ttl, max_ttl, creation,
                      statements(data.get("revocation_statements")),
                      statements(data.get("renew_statements")))
        return no_content()

    def _creds(self, request: Request, name: str) -> Response:
        role = self.roles.get(name)
        if role is None:
            raise bad_request(f"unknown role: {name}")
        config = self.connections.get(role["db_name"])
        if config is None:
            raise VaultError(500, multierror(f"could not find DB with name: {role['db_name']}"))
        if not any(fnmatch.fnmatchcase(name, glob) for glob in config["allowed_roles"]):
            raise VaultError(500, multierror(f'"{name}" is not an allowed role'))
        max_ttl = min(role["max_ttl"] or self.mount.ttl_max, self.mount.ttl_max)
        ttl = min(role["default_ttl"] or self.mount.ttl_default, max_ttl)
        display = (request.token_entry.display_name if request.token_entry else "token")
        username = f"v-{display[:8]}-{name[:8]}-{base62(20)}-{int(time.time())}"[:63]
        password = new_password()
        now = time.time()
        try:
            self._run(role["db_name"], role["creation_statements"], {
                "name": username, "username": username, "password": password,
                "expiration": expiration(now + ttl)})
        except psycopg.Error as exc:
            raise VaultError(500, multierror(str(exc))) from exc
        lease = leases.register(
            self.state, f"{self.mount.path}creds/{name}", ttl, role["default_ttl"] or ttl,
            max_ttl, request.token_entry.id if request.token_entry else None,
            revoke=self._revoke_lease, renew=self._renew_lease,
            secret={"username": username, "role": name, "db_name": role["db_name"]})
        return ok({"username": username, "password": password}, lease_id=lease.id,
                  renewable=True, lease_duration=ttl, mount_type="database")

    def _revoke_lease(self, lease: Lease) -> None:
        username, db_name = lease.secret["username"], lease.secret["db_name"]
        role = self.roles.get(lease.secret["role"])
        custom = role["revocation_statements"] if role else []
        if custom:
            self._run(db_name, custom, {"name": username, "username": username})
        else:
            default_revoke(self.connections[db_name], username)

    def _renew_lease(self, lease: Lease, ttl: int) -> None:
        role = self.roles.get(lease.secret["role"])
        templates = (role["renew_statements"] if role else []) or DEFAULT_RENEW
        username = lease.secret["username"]
        self._run(lease.secret["db_name"], templates, {
            "name": username, "username": username, "expiration": expiration(time.time() + ttl)})

    # -- static roles ----------------------------------------------------------------------

    def _static_role(self, request: Request, name: str) -> Response:
        op = request.operation
        role = self.static_roles.get(name)
        if op == "read":
            if role is None:
                raise VaultError(404)
            hidden = ("password", "last_rotation", "retry_at")
            shown = {k: v for k, v in role.items() if k not in hidden}
            return ok({**shown, "last_vault_rotation": rfc3339nano(role["last_rotation"])},
                      mount_type="database")
        if op == "delete":
            self.static_roles.pop(name, None)
            return no_content()
        self._write_static(name, request.data)
        return no_content()

    def _write_static(self, name: str, data: dict[str, Any]) -> None:
        if not data.get("username"):
            raise bad_request("username is a required field to create a static account")
        if data.get("db_name") not in self.connections:
            raise bad_request("database name is required")
        period = parse_duration(data.get("rotation_period"), "rotation_period")
        if period < self.min_rotation_period:
            raise bad_request(f"rotation_period must be {self.min_rotation_period} seconds or more")
        self.static_roles[name] = {
            "db_name": data["db_name"],
            "username": str(data["username"]),
            "rotation_period": period,
            "rotation_statements": statements(data.get("rotation_statements")),
            "credential_type": "password",
            "password": "",
            "last_rotation": None,
            "retry_at": 0.0,
        }
        try:
            self._rotate(name)
        except VaultError:
            del self.static_roles[name]
            raise

    def _rotate(self, name: str) -> None:
        role = self.static_roles[name]
        password = new_password()
        try:
            self._run(role["db_name"], role["rotation_statements"] or DEFAULT_ROTATION,
                     {"name": role["username"], "username": role["username"],
                      "password": password})
        except psycopg.Error as exc:
            raise bad_request(f"error setting credentials: {exc}") from exc
        role["password"] = password
        role["last_rotation"] = time.time()

    def rotate_due(self, now: float) -> None:
        """The rotation queue: passwords of static roles whose period has run out."""
        with self.state.lock:
            for name, role in list(self.static_roles.items()):
                due = role["last_rotation"] + role["rotation_period"] <= now
                if due and role["retry_at"] <= now:
                    try:
                        self._rotate(name)
                    except VaultError as exc:
                        # Vault's rotation queue retries a failed rotation 10s later.
                        role["retry_at"] = now + 10
                        log.warning("rotation of static role %s failed: %s", name, exc)

    def _static_creds(self, name: str) -> Response:
        role = self.static_roles.get(name)
        if role is None:
            raise bad_request(f"unknown role: {name}")
        remaining = role["last_rotation"] + role["rotation_period"] - time.time()
        return ok({
            "last_vault_rotation": rfc3339nano(role["last_rotation"]),
            "password": role["password"],
            "rotation_period": role["rotation_period"],
            "ttl": max(0, round(remaining)),
            "username": role["username"],
        }, mount_type="database")

    def _rotate_root(self, name: str) -> Response:
        config = self.connections.get(name)
        if config is None:
            raise bad_request(f"unable to read connection configuration {name!r}")
        password = new_password()
        try:
            self._run(name, config["root_rotation_statements"] or DEFAULT_ROOT_ROTATION,
                     {"username": config["username"], "name": config["username"],
                      "password": password})
        except psycopg.Error as exc:
            raise VaultError(500, multierror(f"failed to update user: {exc}")) from exc
        config["password"] = password
        return no_content()
