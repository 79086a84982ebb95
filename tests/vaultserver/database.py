"""The database secrets engine driving a real PostgreSQL (reference section 6).

Statements are rendered with {{name}}/{{username}}, {{password}} and {{expiration}} and run
the way Vault's postgresql-database-plugin runs them: each configured statement is split
on ';' and the parts run in one transaction. Revocation without statements is the
plugin's defaultDeleteUser (revoke per schema, public and CONNECT, then DROP ROLE).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
import secrets
import string
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from tests.vaultserver import leases
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
DEFAULT_CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
]
DEFAULT_RENEW = ["ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}';"]
DEFAULT_ROTATION = ["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';"]
DEFAULT_ROOT_ROTATION = ["ALTER ROLE \"{{username}}\" WITH PASSWORD '{{password}}';"]
PASSWORD_IN_URL = (
    "Password found in connection_url, use a templated url to enable root rotation and "
    "prevent read access to password information."
)


def expiration(epoch: float) -> str:
    """secret_creds.go: "2006-01-02 15:04:05-0700"."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S%z")


def new_password() -> str:
    """20 characters with an upper, a lower, a digit and a dash, like Vault's default."""
    alphabet = string.ascii_letters + string.digits
    return "A1a-" + "".join(secrets.choice(alphabet) for _ in range(16))


def statements(value: Any) -> list[str]:
    """A statements field: list, JSON array string, plain string, or base64 of either."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    text = str(value)
    try:
        decoded = base64.b64decode(text, validate=True).decode()
        if decoded.strip():
            text = decoded
    except (binascii.Error, UnicodeDecodeError):
        pass
    if text.lstrip().startswith("["):
        try:
            return [str(v) for v in json.loads(text)]
        except ValueError:
            pass
    return [text]


def render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


class DatabaseEngine:
    min_rotation_period = 5  # Vault refuses shorter; a test may lower it

    def __init__(self, state: State, mount: Mount) -> None:
        self.state = state
        self.mount = mount
        self.connections: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {}
        self.static_roles: dict[str, dict[str, Any]] = {}
        state.periodic.append(self.rotate_due)

    # -- PostgreSQL ------------------------------------------------------------------------

    def connect(self, name: str) -> psycopg.Connection[Any]:
        config = self.connections[name]
        url = config["connection_url"]
        url = url.replace("{{username}}", quote(config.get("username", ""), safe=""))
        url = url.replace("{{password}}", quote(config.get("password", ""), safe=""))
        return psycopg.connect(url, connect_timeout=5)

    def run(self, db_name: str, templates: list[str], values: dict[str, str]) -> None:
        """Every statement's ';'-separated parts, in one transaction."""
        with self.connect(db_name) as conn, conn.transaction():
            for template in templates:
                for part in render(template, values).split(";"):
                    if part.strip():
                        conn.execute(part.strip().encode())

    def default_revoke(self, db_name: str, username: str) -> None:
        """postgresql.go defaultDeleteUser: strip privileges, then DROP ROLE IF EXISTS."""
        user = sql.Identifier(username)
        with self.connect(db_name) as conn:
            conn.autocommit = True
            exists = conn.execute(
                "SELECT exists (SELECT rolname FROM pg_roles WHERE rolname=%s)", (username,)
            ).fetchone()
            if not exists or not exists[0]:
                return
            schemas = conn.execute(
                "SELECT DISTINCT table_schema FROM information_schema.role_column_grants "
                "WHERE grantee=%s",
                (username,),
            ).fetchall()
            queries: list[sql.Composable] = []
            for (schema,) in schemas:
                queries.append(sql.SQL("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {} FROM {}")
                               .format(sql.Identifier(schema), user))
                queries.append(sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}")
                               .format(sql.Identifier(schema), user))
            queries += [
                sql.SQL("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM {}")
                .format(user),
                sql.SQL("REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM {}")
                .format(user),
                sql.SQL("REVOKE USAGE ON SCHEMA public FROM {}").format(user),
            ]
            dbname = conn.execute("SELECT current_database()").fetchone()
            if dbname:
                queries.append(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}")
                               .format(sql.Identifier(dbname[0]), user))
            last_error: Exception | None = None
            for query in queries:
                try:
                    conn.execute(query)
                except psycopg.Error as exc:  # go on: remove as much access as possible
                    last_error = exc
            if last_error is not None:
                raise RuntimeError(f"could not perform all revocation statements: {last_error}")
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(user))

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
                with self.connect(name) as conn:
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
            self.run(role["db_name"], role["creation_statements"], {
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
            self.run(db_name, custom, {"name": username, "username": username})
        else:
            self.default_revoke(db_name, username)

    def _renew_lease(self, lease: Lease, ttl: int) -> None:
        role = self.roles.get(lease.secret["role"])
        templates = (role["renew_statements"] if role else []) or DEFAULT_RENEW
        username = lease.secret["username"]
        self.run(lease.secret["db_name"], templates, {
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
            self.run(role["db_name"], role["rotation_statements"] or DEFAULT_ROTATION,
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
            self.run(name, config["root_rotation_statements"] or DEFAULT_ROOT_ROTATION,
                     {"username": config["username"], "name": config["username"],
                      "password": password})
        except psycopg.Error as exc:
            raise VaultError(500, multierror(f"failed to update user: {exc}")) from exc
        config["password"] = password
        return no_content()
