"""VaultSource against the Vault test server: KV v1/v2, versions, leases, errors, lookups."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError, LeaseGone, PermissionDenied, SecretNotFound
from entrypoint.sources.vault.source import VaultSource


def source_for(server: Any, token: str | None = None, **settings: Any) -> VaultSource:
    settings.setdefault("startup_timeout", 3.0)
    env = {"VAULT_ADDR": server.addr, "VAULT_TOKEN": token or server.root_token}
    return VaultSource.from_config(Config(**settings), env)


@pytest.fixture
def source(vault_server: Any) -> Iterator[VaultSource]:
    src = source_for(vault_server)
    yield src
    src.close()


def test_kv2_same_path_as_v1_and_versions(vault_server: Any, source: VaultSource) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "first-password"})
    vault_server.write_kv("secret", "app/db", {"password": "second-password", "port": 5432,
                                               "tags": {"a": [1, 2]}, "on": True})
    latest = source.fetch("secret/app/db")
    assert (latest.kind, latest.version) == ("kv2", 2)
    assert latest.plain() == {"password": "second-password", "port": "5432",
                              "tags": '{"a":[1,2]}', "on": "true"}
    pinned = source.fetch("secret/app/db", 1)
    assert (pinned.version, pinned.plain()) == (1, {"password": "first-password"})
    assert vault_server.count("secret/data/app/db") == 2
    assert "secret-password" not in repr(latest) and "second-password" not in repr(latest)


def test_kv1(vault_server: Any, source: VaultSource) -> None:
    vault_server.write_kv("kv", "app/config", {"url": "https://example"})
    fetched = source.fetch("/kv/app/config")  # a trailing slash would name a folder
    assert (fetched.kind, fetched.version, fetched.lease_id) == ("kv1", None, None)
    assert fetched.plain() == {"url": "https://example"}
    with pytest.raises(ConfigError, match=r"\?version applies to KV v2 only"):
        source.fetch("kv/app/config", 2)


def test_mount_asked_once_per_mount(vault_server: Any, source: VaultSource) -> None:
    for i in range(3):
        vault_server.write_kv("secret", f"app/{i}", {"k": "v"})
    for i in range(3):
        source.fetch(f"secret/app/{i}")
    asked = [r.path for r in vault_server.requests if r.path.startswith("sys/internal/ui/")]
    assert asked == ["sys/internal/ui/mounts/secret/app/0"]


def test_deleted_and_destroyed_versions(vault_server: Any, source: VaultSource) -> None:
    import hvac

    for n in range(3):
        vault_server.write_kv("secret", "app/x", {"n": str(n)})
    admin = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    admin.secrets.kv.v2.delete_secret_versions("app/x", [1], mount_point="secret")
    admin.secrets.kv.v2.destroy_secret_versions("app/x", [2], mount_point="secret")
    with pytest.raises(ConfigError) as info:
        source.fetch("secret/app/x", 1)
    assert "vault:secret/app/x?version=1" in str(info.value) and "deleted" in str(info.value)
    with pytest.raises(ConfigError) as info:
        source.fetch("secret/app/x", 2)
    assert "version 2" in str(info.value) and "destroyed" in str(info.value)
    with pytest.raises(SecretNotFound) as missing:
        source.fetch("secret/app/x", 9)
    assert "version 9 of secret/app/x does not exist" in str(missing.value)
    assert source.fetch("secret/app/x").version == 3


def test_missing_path_and_key(vault_server: Any, source: VaultSource) -> None:
    from entrypoint.plan.resolve import Generation
    from entrypoint.sources.registry import Sources

    with pytest.raises(SecretNotFound) as info:
        source.fetch("secret/nope")
    assert info.value.exit_code == 78 and "secret/nope" in str(info.value)
    with pytest.raises(SecretNotFound):
        source.fetch("kv/nope")
    vault_server.write_kv("secret", "app/db", {"password": "pw-0123456789"})
    generation = Generation(Sources({"vault": lambda: source}, {}))
    from entrypoint.plan.refs import parse

    ref = next(p for p in parse("vault:secret/app/db#user", where="t") if not isinstance(p, str))
    with pytest.raises(SecretNotFound) as key:
        generation.value(ref, "variable DB_USER")  # type: ignore[arg-type]
    assert "vault:secret/app/db#user" in str(key.value)
    assert "keys present: password" in str(key.value)
    assert "pw-0123456789" not in str(key.value)


def test_permission_denied_names_path_and_policies(vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw"})
    vault_server.write_kv("secret", "other/db", {"password": "pw"})
    vault_server.set_policy("app-read", {"secret/data/app/*": ["read"]})
    token = vault_server.create_token(["app-read"], ttl=600)
    src = source_for(vault_server, token)
    try:
        assert src.fetch("secret/app/db").plain() == {"password": "pw"}
        with pytest.raises(PermissionDenied) as info:
            src.fetch("secret/other/db")
        assert info.value.exit_code == 77
        assert "secret/other/db" in str(info.value) and "app-read" in str(info.value)
        assert token not in str(info.value)
    finally:
        src.close()


@pytest.fixture
def database(vault_server: Any, postgres: Any) -> Any:
    vault_server.configure_database(postgres)
    vault_server.add_database_role("app", default_ttl=60, max_ttl=120)
    return vault_server


def test_database_creds_lease_and_lease_ops(database: Any, postgres: Any,
                                            source: VaultSource) -> None:
    fetched = source.fetch("database/creds/app")
    assert fetched.kind == "leased" and fetched.renewable
    assert fetched.lease_id and fetched.lease_id.startswith("database/creds/app/")
    assert fetched.lease_duration == 60
    creds = fetched.plain()
    with psycopg.connect(host=postgres.host, port=postgres.port, dbname="postgres",
                         user=creds["username"], password=creds["password"]) as conn:
        assert conn.execute("select current_user").fetchone() == (creds["username"],)
    remaining = source.lookup_lease(fetched.lease_id)
    assert remaining is not None and 0 < remaining <= 60
    granted, renewable, warnings = source.renew_lease(fetched.lease_id, 60)
    assert (granted, renewable) == (60, True) and warnings == []
    # Asking past max_ttl is capped, with Vault's warning.
    granted, _, warnings = source.renew_lease(fetched.lease_id, 3600)
    assert granted <= 120 and any("capped" in w for w in warnings)
    source.revoke_lease(fetched.lease_id)
    assert source.lookup_lease(fetched.lease_id) is None
    with pytest.raises(LeaseGone):
        source.renew_lease(fetched.lease_id, 60)
    assert database.leases("database/creds/app") == []


def test_leases_revoked_on_close_unless_kept(database: Any) -> None:
    src = source_for(database)
    lease = src.fetch("database/creds/app").lease_id
    src.close()
    assert lease not in database.leases()
    kept = source_for(database)
    lease = kept.fetch("database/creds/app").lease_id
    kept.keep_on_close()
    kept.close()
    assert lease in database.leases()
    exec_mode = source_for(database, mode="exec")
    lease = exec_mode.fetch("database/creds/app").lease_id
    exec_mode.close()
    assert lease in database.leases()


def test_static_creds(database: Any, postgres: Any, source: VaultSource) -> None:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE static_app LOGIN PASSWORD 'initial-pw'")
    try:
        database.add_static_role("static", "static_app", rotation_period=300)
        fetched = source.fetch("database/static-creds/static")
        assert fetched.kind == "static-creds" and fetched.lease_id is None
        assert fetched.ttl is not None and 0 < fetched.ttl <= 300
        assert fetched.plain()["username"] == "static_app"
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS static_app")


def test_unknown_database_role_is_not_found(database: Any, source: VaultSource) -> None:
    with pytest.raises(SecretNotFound, match="unknown role"):
        source.fetch("database/creds/nope")


def test_no_value_or_token_in_logs(vault_server: Any, database: Any,
                                   caplog: pytest.LogCaptureFixture) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "kv-secret-value-42"})
    token = vault_server.create_token(["root"], ttl=600)
    with caplog.at_level(logging.DEBUG):
        src = source_for(vault_server, token)
        values = [src.fetch("secret/app/db").plain()["password"],
                  *src.fetch("database/creds/app").plain().values()]
        with pytest.raises(SecretNotFound):
            src.fetch("secret/missing")
        src.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "logged in" in text or "token" in text
    for value in [token, *values]:
        assert value not in text
