"""The PostgreSQL stand-in is a real server that really checks passwords."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest

from tests.services.postgres import PostgresCluster, find_bindir


def test_superuser_logs_in_over_tcp_and_durability_is_off(postgres: PostgresCluster) -> None:
    with psycopg.connect(postgres.dsn()) as conn:
        row = conn.execute(
            "select current_user, rolsuper, current_setting('fsync'), inet_server_addr()::text,"
            " inet_server_port() from pg_roles where rolname = current_user"
        ).fetchone()
    assert row == (postgres.superuser, True, "off", f"{postgres.host}/32", postgres.port)


def test_a_role_must_log_in_with_its_own_password(postgres: PostgresCluster) -> None:
    role = "svc_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"create role {role} login password '{password}'")
    try:
        with psycopg.connect(postgres.dsn(role, password)) as conn:
            assert conn.execute("select current_user").fetchone() == (role,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(postgres.dsn(role, password + "x"))
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(postgres.dsn(role), password="")
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(f"drop role {role}")


def test_dsn_quotes_awkward_credentials_and_names_the_database() -> None:
    cluster = PostgresCluster(superuser_password="p@ss:/word")
    cluster.port = 5999
    assert cluster.dsn() == "postgresql://postgres:p%40ss%3A%2Fword@127.0.0.1:5999/postgres"
    assert cluster.dsn("app", dbname="appdb") == "postgresql://app@127.0.0.1:5999/appdb"


def test_stop_shuts_the_server_down_and_removes_its_folder() -> None:
    cluster = PostgresCluster()
    cluster.start()
    root = cluster._root
    dsn = cluster.dsn()
    assert root is not None and root.is_dir()
    cluster.stop()
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_the_newest_installed_version_is_used(tmp_path: Path) -> None:
    for version in ("9.6", "15", "10", "16"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    (tmp_path / "17" / "bin").mkdir(parents=True)  # client only: no initdb
    assert find_bindir(str(tmp_path)) == tmp_path / "16" / "bin"
