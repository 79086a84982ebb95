"""Bulk export against the real Vault: ``secrets`` paths, ``secrets_prefix``, collisions,
and folders (``secrets = ["secret/app/"]``: every secret beneath, recursively, on KV v1
and v2), including a secret added while the app runs (docs/configuration.md, "Bulk
export")."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli, wait_until
from tests.helpers.journal import wait_for
from tests.helpers.vault_rotation import APP_PROBE, Running, start

# Reading a folder needs LIST on it: metadata/ for KV v2, the path itself for KV v1.
FOLDER_POLICY = {
    "secret/data/*": ["read"],
    "secret/metadata/*": ["list"],
    "kv/*": ["read", "list"],
}
DUMP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def vault_env(vault: Any, policy: dict[str, list[str]] | None = None) -> dict[str, str]:
    vault.set_policy("folders", policy or FOLDER_POLICY)
    token = vault.create_token(["folders"], ttl=600)
    return {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token,
            "ENTRYPOINT_STARTUP_TIMEOUT": "5s"}


def exported(tmp_path: Path, env: dict[str, str], *flags: str) -> dict[str, str]:
    """The environment the app is started with."""
    out = tmp_path / "env.json"
    result = run_cli([*flags, "--", sys.executable, "-c", DUMP, str(out)], env)
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = json.loads(out.read_text())
    return found


def failure(env: dict[str, str], *flags: str) -> tuple[int, str]:
    result = run_cli([*flags, "--", sys.executable, "-c", "pass"], env)
    return result.returncode, result.stderr


@pytest.mark.parametrize("mount", ["secret", "kv"])  # KV v2, KV v1
def test_a_folder_exports_every_secret_beneath_it(vault_server: Any, mount: str,
                                                  tmp_path: Path) -> None:
    vault_server.write_kv(mount, "app/db", {"password": "pw-folder-0123"})
    vault_server.write_kv(mount, "app/api", {"api-key": "key-folder-0123"})
    vault_server.write_kv(mount, "app/nested/deep/cache", {"url": "redis://cache:6379"})
    # Neither is beneath app/: the secret named app, and a sibling folder.
    vault_server.write_kv(mount, "app", {"top": "not-in-the-folder"})
    vault_server.write_kv(mount, "other/x", {"y": "not-in-the-folder"})
    env = exported(tmp_path, vault_env(vault_server), "--secrets", f"{mount}/app/")
    assert env["PASSWORD"] == "pw-folder-0123"
    assert env["API_KEY"] == "key-folder-0123"
    assert env["URL"] == "redis://cache:6379"
    assert "TOP" not in env and "Y" not in env
    listed = f"{mount}/metadata/app/" if mount == "secret" else f"{mount}/app/"
    assert vault_server.count(listed, "LIST") == 1
    assert vault_server.count(listed + "nested/deep/", "LIST") == 1


def test_a_folder_follows_prefix_upcase_and_sanitize(vault_server: Any,
                                                     tmp_path: Path) -> None:
    vault_server.write_kv("secret", "svc/db", {"db-url": "postgres://db/app"})
    vault_server.write_kv("secret", "svc/more/x", {"2fa": "on"})
    base = vault_env(vault_server)
    env = exported(tmp_path, base, "--secrets", "secret/svc/", "--secrets-prefix", "app_")
    assert env["APP_DB_URL"] == "postgres://db/app" and env["APP_2FA"] == "on"
    env = exported(tmp_path, base, "--secrets", "secret/svc/",
                   "--secrets-prefix", "app_", "--no-secrets-upcase")
    assert env["app_db_url"] == "postgres://db/app" and env["app_2fa"] == "on"
    assert "APP_DB_URL" not in env


def test_a_listed_secret_is_exported_with_its_prefix(vault_server: Any,
                                                     tmp_path: Path) -> None:
    vault_server.write_kv("secret", "app/db", {"user": "app", "port": 5432})
    vault_server.write_kv("secret", "app/other", {"unlisted": "no"})
    env = exported(tmp_path, {**vault_env(vault_server), "ENTRYPOINT_SECRETS": "secret/app/db",
                              "ENTRYPOINT_SECRETS_PREFIX": "DB_"})
    assert env["DB_USER"] == "app" and env["DB_PORT"] == "5432"
    assert "DB_UNLISTED" not in env and "UNLISTED" not in env
    assert vault_server.count("secret/metadata/", "LIST") == 0  # a secret is not listed


def test_two_listed_paths_holding_one_name_fail_naming_both(vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw-a-0123456789"})
    vault_server.write_kv("kv", "app/db", {"PASSWORD": "pw-b-0123456789"})
    code, stderr = failure(vault_env(vault_server), "--secrets", "secret/app/db",
                           "--secrets", "kv/app/db")
    assert code == 78, stderr
    assert ("bulk export: kv/app/db#PASSWORD and secret/app/db#password both become "
            "variable PASSWORD") in stderr
    assert "pw-a-0123456789" not in stderr and "pw-b-0123456789" not in stderr


def test_two_secrets_of_one_folder_holding_one_name_fail_naming_both(
        vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/a", {"password": "pw-a-0123456789"})
    vault_server.write_kv("secret", "app/b/c", {"PASSWORD": "pw-b-0123456789"})
    env = vault_env(vault_server)
    code, stderr = failure(env, "--secrets", "secret/app/")
    assert code == 78, stderr
    # Secrets in path order: the later one is named first, as for two listed paths.
    assert ("bulk export: secret/app/b/c#PASSWORD and secret/app/a#password both become "
            "variable PASSWORD") in stderr
    # A prefix does not separate two keys of one folder; turning upcase off does.
    assert failure(env, "--secrets", "secret/app/", "--secrets-prefix", "X_")[0] == 78
    assert failure(env, "--secrets", "secret/app/", "--no-secrets-upcase")[0] == 0


def test_a_folder_without_list_permission_or_secrets_is_refused(vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw-0123456789"})
    code, stderr = failure(vault_env(vault_server, {"secret/data/*": ["read"]}),
                           "--secrets", "secret/app/")
    assert code == 77, stderr
    assert "vault:secret/app/: permission denied (list secret/app/)" in stderr
    code, stderr = failure(vault_env(vault_server), "--secrets", "secret/none/")
    assert code == 78, stderr
    assert "no secret under folder secret/none/ on KV v2 mount secret/" in stderr
    code, stderr = failure(vault_env(vault_server), "--secrets", "cubbyhole/app/")
    assert code == 78, stderr
    assert "a folder is read from a KV v1 or v2 mount" in stderr


def test_check_lists_a_folder_row(vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw-0123456789"})
    vault_server.write_kv("secret", "app/deep/api", {"key": "key-0123456789"})
    result = run_cli(["check"], {**vault_env(vault_server),
                                 "ENTRYPOINT_SECRETS": "secret/app/,secret/app/db"})
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["vault:secret/app/", "kv2", "folder", "2", "secrets", "bulk", "export",
            "ok"] in rows
    assert ["vault:secret/app/db", "kv2", "v1", "bulk", "export", "ok"] in rows


def test_a_secret_added_to_a_folder_is_one_restart_at_the_next_poll(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    vault_server.write_kv("secret", "app/db", {"password": "pw-first-0123"})
    vault_server.write_kv("kv", "app/db", {"unrelated": "kv1-0123"})
    ep = start(tmp_path, vault_env(vault_server),
               ["--secrets", "secret/app/", "--poll-interval", "300ms",
                "--wait-min", "100ms", "--wait-max", "500ms"],
               [sys.executable, APP_PROBE, "{journal}", "PASSWORD", "API_KEY"])
    procs.append(ep)
    first = wait_for(ep.journal, "start")[0]
    assert first["env"] == {"PASSWORD": "pw-first-0123", "API_KEY": None}
    ep.wait_log("fetched vault:secret/app/")
    vault_server.write_kv("secret", "app/new/api", {"api_key": "key-added-0123"})
    second = wait_for(ep.journal, "start", 2)[1]
    assert second["env"] == {"PASSWORD": "pw-first-0123", "API_KEY": "key-added-0123"}
    # Several more polls of the unchanged folder: nothing more happens.
    polls = vault_server.count("secret/metadata/app/", "LIST")
    wait_until(lambda: vault_server.count("secret/metadata/app/", "LIST") >= polls + 3,
               timeout=10, what="three more polls of the folder")
    assert ep.stop() == 0, ep.log
    assert len(ep.events("start")) == 2
    assert len(ep.lines("rotation: restarting the app")) == 1
    assert ep.lines("vault:secret/app/ changed")
    ep.assert_no_secret_logged("pw-first-0123", "key-added-0123")
