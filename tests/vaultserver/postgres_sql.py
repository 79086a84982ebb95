"""PostgreSQL as Vault's postgresql-database-plugin drives it: statements and defaults.

Statements are rendered with {{name}}/{{username}}, {{password}} and {{expiration}}; each
configured statement is split on ';' and the parts run in one transaction. Revocation
without statements is the plugin's defaultDeleteUser (revoke per schema, on public and
CONNECT on the database, then DROP ROLE IF EXISTS), going on past errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

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


def connect(config: dict[str, Any]) -> psycopg.Connection[Any]:
    """A connection with {{username}}/{{password}} of the connection_url filled in."""
    url = config["connection_url"]
    url = url.replace("{{username}}", quote(config.get("username", ""), safe=""))
    url = url.replace("{{password}}", quote(config.get("password", ""), safe=""))
    return psycopg.connect(url, connect_timeout=5)


def run(config: dict[str, Any], templates: list[str], values: dict[str, str]) -> None:
    """Every statement's ';'-separated parts, in one transaction."""
    with connect(config) as conn, conn.transaction():
        for template in templates:
            for part in render(template, values).split(";"):
                if part.strip():
                    conn.execute(part.strip().encode())


def default_revoke(config: dict[str, Any], username: str) -> None:
    """postgresql.go defaultDeleteUser: strip privileges, then DROP ROLE IF EXISTS."""
    user = sql.Identifier(username)
    with connect(config) as conn:
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
        queries: list[sql.Composed] = []
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
