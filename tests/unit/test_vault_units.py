"""Pure parts of the Vault client: method choice, mount answers, KV v2 deleted versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError
from entrypoint.sources.vault import kv
from entrypoint.sources.vault.auth import choose, method_name, mount_of


@pytest.mark.parametrize(("config", "environ", "expected"), [
    (Config(), {}, "aws-iam"),
    (Config(), {"VAULT_TOKEN": "t"}, "token"),
    (Config(vault_token_file=Path("/run/agent/token")), {}, "token"),
    (Config(vault_auth="approle"), {"VAULT_TOKEN": "t"}, "approle"),
    (Config(vault_auth="kubernetes"), {}, "kubernetes"),
])
def test_default_method(config: Config, environ: dict[str, str], expected: str) -> None:
    assert method_name(config, environ) == expected


@pytest.mark.parametrize(("method", "mount", "expected"), [
    ("aws-iam", None, "aws"), ("approle", None, "approle"), ("kubernetes", None, "kubernetes"),
    ("aws-iam", "/aws-prod/", "aws-prod"),
])
def test_mount_defaults_to_the_method(method: str, mount: str | None, expected: str) -> None:
    assert mount_of(Config(vault_auth=method, vault_auth_mount=mount), method) == expected


def test_methods_need_their_settings() -> None:
    with pytest.raises(ConfigError, match="kubernetes needs a role"):
        choose(Config(vault_auth="kubernetes"), {})
    with pytest.raises(ConfigError, match="role_id"):
        choose(Config(vault_auth="approle"), {})
    with pytest.raises(ConfigError, match="VAULT_TOKEN or vault_token_file"):
        choose(Config(vault_auth="token"), {})
    login = choose(Config(vault_auth="approle"),
                   {"VAULT_ROLE_ID": "role-id-1", "VAULT_SECRET_ID": "secret-id-value-123"})
    assert "secret-id-value-123" not in repr(login)


@pytest.mark.parametrize(("data", "path", "expected"), [
    ({"path": "kv/", "type": "kv", "options": {"version": "2"}}, "kv/app/db",
     kv.Mount("kv/", "kv", 2)),
    ({"path": "old/", "type": "kv", "options": None}, "old/app", kv.Mount("old/", "kv", 1)),
    ({"path": "old/", "type": "kv", "options": {"version": ""}}, "old/a",
     kv.Mount("old/", "kv", 1)),
    ({"path": "team/kv/", "type": "kv", "options": {"version": "2"}}, "team/kv/x",
     kv.Mount("team/kv/", "kv", 2)),
    ({"path": "database/", "type": "database"}, "database/creds/app",
     kv.Mount("database/", "database", None)),
    ({"type": "kv"}, "secret/x", kv.Mount("secret/", "kv", 1)),
])
def test_mount_from_data(data: dict[str, object], path: str, expected: kv.Mount) -> None:
    assert kv.Mount.from_data(data, path) == expected


def test_mount_table_asks_once_per_mount() -> None:
    asked: list[str] = []

    def ask(path: str) -> dict[str, object]:
        asked.append(path)
        first = path.split("/")[0]
        return {"path": first + "/", "type": "kv", "options": {"version": "2"}}

    table = kv.MountTable()
    for path in ("kv/a", "kv/b/c", "kv/a", "other/x", "kv"):
        table.find(path, ask)
    assert asked == ["kv/a", "other/x"]
    assert table.cached("kvx/a") is None  # a prefix of the name is not the mount


def test_v2_path_gets_data_segment() -> None:
    assert kv.v2_data_path(kv.Mount("kv/", "kv", 2), "app/db") == "kv/data/app/db"
    assert kv.api_path("kv/data/a b") == "/v1/kv/data/a%20b"


def test_deleted_and_destroyed_versions_are_named() -> None:
    deleted = {"data": {"data": None, "metadata": {"version": 3, "destroyed": False,
                                                   "deletion_time": "2024-01-01T00:00:00Z"}}}
    error = kv.deleted_version_error("kv/app/db", 3, deleted)
    assert error is not None and error.exit_code == 78
    assert "vault:kv/app/db?version=3" in str(error) and "version 3" in str(error)
    assert "deleted" in str(error)
    destroyed = {"data": {"data": None, "metadata": {"version": 2, "destroyed": True,
                                                     "deletion_time": ""}}}
    error = kv.deleted_version_error("kv/app/db", None, destroyed)
    assert error is not None and "the latest version (2)" in str(error)
    assert "destroyed" in str(error)
    assert kv.deleted_version_error("kv/app/db", 1, {"errors": []}) is None
    assert kv.deleted_version_error("kv/app/db", 1, None) is None


def test_a_lease_less_answer_with_its_own_ttl_is_replaced_by_that_ttl_not_polled() -> None:
    """identity/oidc/token (and AWS STS on some Vault versions) answer with ``ttl`` in
    the data and no lease; PKI with ``expiration``: each read mints a new value."""
    import time as _time

    from entrypoint.sources.base import Refresh
    from entrypoint.sources.vault.kv import Mount, leased_fetched

    mount = Mount("identity/", "identity", None)
    oidc = leased_fetched("identity/oidc/token/app", mount,
                          {"data": {"token": "eyJ", "client_id": "c", "ttl": 60}}, 5.0)
    assert (oidc.refresh, oidc.ttl, oidc.kind, oidc.lease_id) == (Refresh.TTL, 60.0, "ttl", None)
    cert = leased_fetched("pki/cert/x", Mount("pki/", "pki", None),
                          {"data": {"certificate": "c", "expiration": _time.time() + 3600}}, 0)
    assert cert.refresh is Refresh.TTL and 3590 < (cert.ttl or 0) <= 3600
    for data in ({"ttl": 0}, {"ttl": "60"}, {"ttl": True}, {"expiration": 1}, {"value": "x"}):
        static = leased_fetched("generic/app", Mount("generic/", "generic", None),
                                {"data": data}, 0)
        assert static.refresh is Refresh.POLL, data


def test_a_stored_secret_with_a_ttl_field_stays_a_polled_secret() -> None:
    """cubbyhole (or a mount Vault would not name) may hold a "ttl" of its own: data."""
    from entrypoint.sources.base import Refresh
    from entrypoint.sources.vault.kv import Mount, leased_fetched

    for mount in (Mount("cubbyhole/", "cubbyhole", None), Mount("odd/", "", None)):
        fetched = leased_fetched(f"{mount.path}app", mount,
                                 {"data": {"password": "p", "ttl": 30}}, 0)
        assert fetched.refresh is Refresh.POLL, mount


def test_a_reference_writes_only_to_issuing_endpoints() -> None:
    from types import SimpleNamespace

    from entrypoint.errors import ConfigError
    from entrypoint.sources.vault.issue import writable_mount
    from entrypoint.sources.vault.kv import Mount

    mounts = {"pki": Mount("pki/", "pki", None), "secret": Mount("secret/", "kv", 2),
              "aws": Mount("aws/", "aws", None), "odd": Mount("odd/", "", None),
              "database": Mount("database/", "database", None)}
    source = SimpleNamespace(mount_of=lambda path: mounts[path.partition("/")[0]])
    for path in ("pki/issue/web", "pki/sign/web", "aws/sts/app", "aws/creds/app"):
        assert writable_mount(source, path)  # type: ignore[arg-type]
    for path in ("secret/app", "odd/app", "aws/config/root", "pki/roles/web",
                 "database/rotate-root/db", "pki/root/generate/internal"):
        with pytest.raises(ConfigError, match="references write only to issuing endpoints"):
            writable_mount(source, path)  # type: ignore[arg-type]


def test_the_signing_helper_gets_no_reference_meant_for_the_app() -> None:
    from entrypoint.sources.vault.auth.aws_iam import helper_env

    env = helper_env({"AWS_ACCESS_KEY_ID": "vault:aws/creds/app#access_key",
                      "AWS_SECRET_ACCESS_KEY": "${vault:aws/creds/app#secret_key}",
                      "AWS_REGION": "eu-west-1", "AWS_PROFILE": "vault:broken",
                      "VAULT_TOKEN": "hvs.x", "HOME": "/root", "DB": "x"})
    assert env == {"AWS_REGION": "eu-west-1", "HOME": "/root"}
