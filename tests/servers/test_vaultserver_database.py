"""Conformance of the Vault test server: database engine and sys/leases on a real PostgreSQL."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import datetime

import hvac
import hvac.exceptions
import psycopg
import pytest
import requests

from tests.services.ports import wait_until
from tests.services.postgres import PostgresCluster
from tests.vaultserver.server import VaultTestServer

LEASE_ID = re.compile(r"database/creds/app/[A-Za-z0-9]{24}")


@pytest.fixture
def db(vault_standin: VaultTestServer, postgres: PostgresCluster) -> Iterator[hvac.Client]:
    vault_standin.configure_database(postgres)
    vault_standin.add_database_role("app", default_ttl=60, max_ttl=120)
    yield hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)


def role_exists(postgres: PostgresCluster, name: str) -> bool:
    with psycopg.connect(postgres.dsn()) as conn:
        row = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        return bool(row and row[0])


def valid_until(postgres: PostgresCluster, name: str) -> datetime:
    with psycopg.connect(postgres.dsn()) as conn:
        row = conn.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s",
                           (name,)).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


def can_log_in(postgres: PostgresCluster, user: str, password: str) -> bool:
    try:
        with psycopg.connect(postgres.dsn(user, password), connect_timeout=5) as conn:
            return conn.execute("SELECT current_user").fetchone() == (user,)
    except psycopg.OperationalError:
        return False


def test_creds_shape_and_a_real_login(db: hvac.Client, postgres: PostgresCluster) -> None:
    creds = db.secrets.database.generate_credentials("app")
    assert LEASE_ID.fullmatch(creds["lease_id"])
    assert (creds["lease_duration"], creds["renewable"], creds["mount_type"]) == (
        60, True, "database")
    username, password = creds["data"]["username"], creds["data"]["password"]
    assert re.fullmatch(r"v-root-app-[A-Za-z0-9]{20}-\d{10}", username)
    assert len(password) == 20 and re.search(r"[A-Z]", password) and "-" in password
    assert can_log_in(postgres, username, password)


def test_renew_is_capped_and_moves_valid_until(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    vault_standin.add_database_role("short", default_ttl=2, max_ttl=30)
    creds = db.secrets.database.generate_credentials("short")
    before = valid_until(postgres, creds["data"]["username"])
    renewed = db.sys.renew_lease(creds["lease_id"], increment=3600)
    assert renewed["lease_id"] == creds["lease_id"] and renewed["data"] is None
    assert renewed["lease_duration"] in (28, 29)
    assert renewed["warnings"] == [
        f'TTL of "1h" exceeded the effective max_ttl of "{renewed["lease_duration"]}s"; '
        "TTL value is capped accordingly"]
    assert (valid_until(postgres, creds["data"]["username"]) - before).total_seconds() >= 20
    plain = db.sys.renew_lease(creds["lease_id"])
    assert plain["lease_duration"] == 2 and plain["warnings"] is None


def test_lookup_and_lease_errors(db: hvac.Client, vault_standin: VaultTestServer) -> None:
    creds = db.secrets.database.generate_credentials("app")
    looked = db.sys.read_lease(creds["lease_id"])
    data = looked["data"]
    assert set(data) == {"expire_time", "id", "issue_time", "last_renewal", "renewable", "ttl"}
    assert data["id"] == creds["lease_id"] and data["last_renewal"] is None
    assert 58 <= data["ttl"] <= 60 and looked["lease_id"] == ""
    db.sys.renew_lease(creds["lease_id"], increment=30)
    assert db.sys.read_lease(creds["lease_id"])["data"]["last_renewal"].endswith("Z")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"^invalid lease"):
        db.sys.read_lease("database/creds/app/nope")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"^lease not found"):
        db.sys.renew_lease("database/creds/app/nope")
    missing = requests.put(f"{vault_standin.addr}/v1/sys/leases/renew", json={}, timeout=10,
                           headers={"X-Vault-Token": vault_standin.root_token})
    assert missing.json() == {"errors": ["lease_id must be specified"]}
    for action in ("lookup", "revoke"):
        answer = requests.put(f"{vault_standin.addr}/v1/sys/leases/{action}", json={},
                              headers={"X-Vault-Token": vault_standin.root_token}, timeout=10)
        assert answer.json() == {"errors": ["lease_id must be specified"]}
    with pytest.raises(hvac.exceptions.InvalidRequest,
                       match="tokens cannot be renewed through this endpoint"):
        db.sys.renew_lease("auth/token/create/abc")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"^unknown role: nobody"):
        db.secrets.database.generate_credentials("nobody")
    wrong_method = requests.delete(f"{vault_standin.addr}/v1/database/creds/app", timeout=10,
                                   headers={"X-Vault-Token": vault_standin.root_token})
    assert wrong_method.json() == {"errors": ["unsupported operation"]}
    assert wrong_method.status_code == 405
    listed = db.sys.list_leases("database/creds/app/")["data"]["keys"]
    assert listed == [creds["lease_id"].rsplit("/", 1)[1]]


def test_revoke_is_synchronous_204_and_drops_the_role(db: hvac.Client,
                                                      postgres: PostgresCluster) -> None:
    """sys/leases/revoke is synchronous unless `sync` is false (as Vault's default): 204,
    and the role is gone when the answer comes; with sync=false, 202 (lazy)."""
    creds = db.secrets.database.generate_credentials("app")
    assert role_exists(postgres, creds["data"]["username"])
    answer = db.sys.revoke_lease(creds["lease_id"])
    assert isinstance(answer, requests.Response)
    assert (answer.status_code, answer.content) == (204, b"")
    assert not role_exists(postgres, creds["data"]["username"])
    assert db.sys.revoke_lease("database/creds/app/unknown").status_code == 204
    other = db.secrets.database.generate_credentials("app")
    lazy = requests.put(f"{db.url}/v1/sys/leases/revoke", timeout=10,
                        headers={"X-Vault-Token": db.token},
                        json={"lease_id": other["lease_id"], "sync": False})
    assert (lazy.status_code, lazy.content) == (202, b"")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="lease not found"):
        db.sys.renew_lease(creds["lease_id"])


def test_expiry_revokes_with_the_statements(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    vault_standin.add_database_role("brief", default_ttl=1, max_ttl=1)
    creds = db.secrets.database.generate_credentials("brief")
    username = creds["data"]["username"]
    assert creds["lease_duration"] == 1 and role_exists(postgres, username)
    wait_until(lambda: not role_exists(postgres, username), 5, "the expired lease's role to go")
    assert vault_standin.leases("database/creds/brief/") == []


def test_token_revocation_takes_its_leases(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    vault_standin.set_policy("dbapp", {"database/creds/app": ["read"]})
    token = vault_standin.create_token(["dbapp"], ttl=60)
    client = hvac.Client(url=vault_standin.addr, token=token)
    creds = client.secrets.database.generate_credentials("app")
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.revoke_lease(creds["lease_id"])  # not in the default policy
    client.auth.token.revoke_self()
    assert not role_exists(postgres, creds["data"]["username"])
    assert vault_standin.leases() == []


def test_token_expiry_takes_its_leases(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    token = vault_standin.create_token(["root"], ttl=1)
    creds = hvac.Client(url=vault_standin.addr, token=token).secrets.database.generate_credentials(
        "app")
    assert creds["lease_duration"] == 60, "the lease outlives the token on paper"
    wait_until(lambda: not role_exists(postgres, creds["data"]["username"]), 5,
               "the role of the expired token's lease to go")
    assert vault_standin.leases() == []


def test_custom_revocation_and_revoke_prefix(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    db.secrets.database.create_role(
        "custom", db_name="pg", default_ttl="1m", max_ttl="2m",
        creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"],
        revocation_statements=["ALTER ROLE \"{{name}}\" NOLOGIN;"])
    role = db.secrets.database.read_role("custom")["data"]
    assert (role["default_ttl"], role["max_ttl"], role["db_name"]) == (60, 120, "pg")
    first = db.secrets.database.generate_credentials("custom")["data"]
    second = db.secrets.database.generate_credentials("custom")["data"]
    answer = db.sys.revoke_prefix("database/creds/custom")
    assert answer.status_code == 202
    for creds in (first, second):
        assert role_exists(postgres, creds["username"]), "custom statements keep the role"
        assert not can_log_in(postgres, creds["username"], creds["password"])


def test_connection_config_and_allowed_roles(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster
) -> None:
    url = f"postgresql://{{{{username}}}}:{{{{password}}}}@{postgres.host}:{postgres.port}/postgres"
    answer = db.secrets.database.configure(
        "narrow", "postgresql-database-plugin", allowed_roles="other", connection_url=url,
        username=postgres.superuser, password=postgres.superuser_password)
    assert answer.status_code == 204
    config = db.secrets.database.read_connection("narrow")["data"]
    assert config["allowed_roles"] == ["other"]
    assert config["connection_details"] == {"connection_url": url,
                                            "username": postgres.superuser}
    assert postgres.superuser_password not in str(config)
    vault_standin.add_database_role("blocked", db_name="narrow")
    with pytest.raises(hvac.exceptions.InternalServerError, match='"blocked" is not an allowed'):
        db.secrets.database.generate_credentials("blocked")
    literal = postgres.dsn()
    warned = db.secrets.database.configure(
        "literal", "postgresql-database-plugin", allowed_roles="*", connection_url=literal)
    assert warned["warnings"] == [
        "Password found in connection_url, use a templated url to enable root rotation and "
        "prevent read access to password information."]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="error creating database object"):
        db.secrets.database.configure("broken", "postgresql-database-plugin",
                                      connection_url=postgres.dsn(password="wrong"))


@pytest.fixture
def static_user(postgres: PostgresCluster) -> Iterator[str]:
    name = f"static_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'initial'")
    yield name
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_static_role_creds_and_rotation(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster, static_user: str
) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="5 seconds or more"):
        db.secrets.database.create_static_role("st", "pg", static_user, None, rotation_period=2)
    db.secrets.database.create_static_role("st", "pg", static_user, None, rotation_period=3600)
    assert not can_log_in(postgres, static_user, "initial"), "the password is set at creation"
    creds = db.secrets.database.get_static_credentials("st")
    assert creds["lease_id"] == "" and creds["lease_duration"] == 0
    data = creds["data"]
    assert set(data) == {"username", "password", "ttl", "last_vault_rotation", "rotation_period"}
    assert (data["username"], data["rotation_period"]) == (static_user, 3600)
    assert 3598 <= data["ttl"] <= 3600 and data["last_vault_rotation"].endswith("Z")
    assert can_log_in(postgres, static_user, data["password"])
    assert db.secrets.database.rotate_static_role_credentials("st").status_code == 204
    rotated = db.secrets.database.get_static_credentials("st")["data"]
    assert rotated["password"] != data["password"]
    assert can_log_in(postgres, static_user, rotated["password"])
    assert not can_log_in(postgres, static_user, data["password"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"^unknown role: nope"):
        db.secrets.database.get_static_credentials("nope")


def test_static_role_rotates_on_its_period(
    vault_standin: VaultTestServer, db: hvac.Client, postgres: PostgresCluster, static_user: str
) -> None:
    vault_standin.engine("database").min_rotation_period = 1
    vault_standin.add_static_role("fast", static_user, rotation_period=1)
    first = db.secrets.database.get_static_credentials("fast")["data"]["password"]
    wait_until(lambda: db.secrets.database.get_static_credentials("fast")["data"]["password"]
               != first, 5, "the scheduled rotation")
    current = db.secrets.database.get_static_credentials("fast")["data"]["password"]
    assert can_log_in(postgres, static_user, current) or \
        db.secrets.database.get_static_credentials("fast")["data"]["password"] != current


def test_rotate_root(vault_standin: VaultTestServer, postgres: PostgresCluster) -> None:
    admin = f"vault_admin_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD 'first'")
    try:
        client = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
        client.sys.enable_secrets_engine("database")
        client.secrets.database.configure(
            "own", "postgresql-database-plugin", allowed_roles="*", username=admin,
            password="first",
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{postgres.host}:"
                           f"{postgres.port}/postgres")
        assert client.secrets.database.rotate_root_credentials("own").status_code == 204
        assert not can_log_in(postgres, admin, "first")
        vault_standin.add_database_role("after", db_name="own")
        creds = client.secrets.database.generate_credentials("after")["data"]
        assert can_log_in(postgres, creds["username"], creds["password"])
    finally:
        vault_standin.close()  # revoke while the admin role still exists
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {admin}")
