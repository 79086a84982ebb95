"""AppRole and Kubernetes logins against the real Vault, in-process and through the
binary; secret_id and service-account token are read at every login."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import AuthError
from entrypoint.sources.vault.source import VaultSource
from tests.helpers.cli import run_cli
from tests.helpers.secrecy import seed_secret


@pytest.fixture
def server(vault_server: Any) -> Any:
    vault_server.write_kv("secret", "app", {"k": "approle-visible-1"})
    vault_server.set_policy("app", {"secret/data/app": ["read"]})
    return vault_server


def test_approle_from_settings_and_from_variables(server: Any, tmp_path: Path) -> None:
    server.enable_auth("approle")
    role_id, secret_id = server.engine("approle", auth=True).add_role("app", ["app"], ttl=300)
    src = VaultSource.from_config(
        Config(vault_auth="approle", vault_approle_role_id=role_id, startup_timeout=2),
        {"VAULT_ADDR": server.addr, "VAULT_SECRET_ID": secret_id})
    assert src.fetch("secret/app").plain() == {"k": "approle-visible-1"}
    assert src.keeper.current is not None and src.keeper.current.ttl == 300
    assert server.count("auth/approle/login") == 1
    src.close()
    sink = tmp_path / "secret-id"
    sink.write_text(secret_id + "\n")
    src = VaultSource.from_config(
        Config(vault_auth="approle", vault_approle_secret_id_file=sink, startup_timeout=2),
        {"VAULT_ADDR": server.addr, "VAULT_ROLE_ID": role_id})
    assert src.fetch("secret/app").plain() == {"k": "approle-visible-1"}
    src.close()


def test_approle_refused(server: Any) -> None:
    server.enable_auth("approle")
    role_id, _ = server.engine("approle", auth=True).add_role("app", ["app"])
    src = VaultSource.from_config(
        Config(vault_auth="approle", vault_approle_role_id=role_id, startup_timeout=2),
        {"VAULT_ADDR": server.addr, "VAULT_SECRET_ID": "wrong-secret-id-value"})
    with pytest.raises(AuthError) as info:
        src.fetch("secret/app")
    assert info.value.exit_code == 77 and "invalid role or secret ID" in str(info.value)
    assert "wrong-secret-id-value" not in str(info.value)
    src.close()


def test_kubernetes_on_a_custom_mount(server: Any, tmp_path: Path) -> None:
    server.enable_auth("kubernetes", "k8s")
    engine = server.engine("k8s", auth=True)
    pod_jwt = seed_secret(engine.add_jwt("app-sa", "prod"))
    engine.add_role("app", ["app-sa"], ["prod"], ["app"], ttl=120)
    jwt = tmp_path / "token"
    jwt.write_text(pod_jwt)
    src = VaultSource.from_config(
        Config(vault_auth="kubernetes", vault_auth_mount="k8s", vault_role="app",
               vault_kubernetes_token_file=jwt, startup_timeout=2), {"VAULT_ADDR": server.addr})
    assert src.fetch("secret/app").plain() == {"k": "approle-visible-1"}
    assert server.count("auth/k8s/login") == 1
    src.close()


def test_approle_through_the_binary(server: Any) -> None:
    server.enable_auth("approle")
    role_id, secret_id = server.engine("approle", auth=True).add_role("app", ["app"])
    env = {"VAULT_ADDR": server.addr, "ENTRYPOINT_VAULT_AUTH": "approle",
           "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
           "X": "vault:secret/app#k"}
    result = run_cli(["--exec", "--", "sh", "-c", 'test "$X" = approle-visible-1 && '
                      'test -z "$VAULT_SECRET_ID"'], env)
    assert result.returncode == 0, result.stderr
    assert secret_id not in result.stderr and "approle-visible-1" not in result.stderr
