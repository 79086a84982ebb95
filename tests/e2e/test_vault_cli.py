"""The whole binary against the Vault test server (subprocesses, real PostgreSQL).

Issue 4 point 9: DATABASE_URL built inline from the two halves of one database lease; a
small app connects with it and runs a query. Plus exit codes, check, and no secret or
token in anything the entrypoint writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli

APP = """
import json, os, sys
import psycopg
url = os.environ["DATABASE_URL"]
with psycopg.connect(url) as conn:
    user, answer = conn.execute("select current_user, 41 + 1").fetchone()
with open(sys.argv[1], "w") as out:
    json.dump({"url": url, "user": user, "answer": answer,
               "api_key": os.environ["API_KEY"],
               "vault_token": os.environ.get("VAULT_TOKEN")}, out)
"""


@pytest.fixture
def db_vault(vault_server: Any, postgres: Any) -> Any:
    vault_server.configure_database(postgres)
    vault_server.add_database_role("app", default_ttl=300, max_ttl=600)
    vault_server.write_kv("secret", "app/api", {"key": "api-key-value-0123456789"})
    vault_server.set_policy("app", {"secret/data/app/*": ["read"],
                                    "database/creds/app": ["read"],
                                    "sys/leases/*": ["update"]})
    return vault_server


def app_env(server: Any, postgres: Any, token: str) -> dict[str, str]:
    ref = "vault:database/creds/app"
    return {
        "VAULT_ADDR": server.addr, "VAULT_TOKEN": token,
        "DATABASE_URL": f"postgresql://${{{ref}#username}}:${{{ref}#password}}@"
                        f"{postgres.host}:{postgres.port}/postgres",
        "API_KEY": "vault:secret/app/api#key",
        "ENTRYPOINT_STARTUP_TIMEOUT": "5s",
    }


def run_app(tmp_path: Path, env: dict[str, str], *flags: str) -> tuple[Any, dict[str, Any]]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = tmp_path / "out.json"
    result = run_cli([*flags, "--", sys.executable, str(app), str(out)], env)
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


@pytest.mark.parametrize("flags", [(), ("--exec",)], ids=["supervise", "exec"])
def test_database_url_from_one_lease(db_vault: Any, postgres: Any, tmp_path: Path,
                                     flags: tuple[str, ...]) -> None:
    token = db_vault.create_token(["app"], ttl=600)
    result, seen = run_app(tmp_path, app_env(db_vault, postgres, token), *flags)
    assert seen["answer"] == 42
    assert seen["url"].startswith(f"postgresql://{seen['user']}:")
    assert seen["api_key"] == "api-key-value-0123456789"
    assert seen["vault_token"] is None, "the bootstrap token is not passed to the app"
    # Both halves came from one lease: one read, one database user.
    assert db_vault.count("database/creds/app") == 1
    password = seen["url"].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    logs = result.stderr + result.stdout
    for value in (token, password, seen["api_key"], seen["url"]):
        assert value not in logs
    assert "vault" in logs  # the run did log (fetches, login), just no values
    leases = db_vault.leases("database/creds/app")
    if flags == ("--exec",):
        assert len(leases) == 1, "exec mode leaves the app's lease alone"
    else:
        assert leases == [], "supervise mode revokes its leases on exit"


def test_json_logs_hold_no_values(db_vault: Any, postgres: Any, tmp_path: Path) -> None:
    token = db_vault.create_token(["app"], ttl=600)
    env = app_env(db_vault, postgres, token) | {"ENTRYPOINT_LOG_FORMAT": "json",
                                                "ENTRYPOINT_LOG_LEVEL": "debug"}
    result, seen = run_app(tmp_path, env, "--exec")
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines
    for value in (token, seen["api_key"], seen["url"]):
        assert value not in result.stderr


def test_check_reads_everything_and_leaves_nothing(db_vault: Any, postgres: Any) -> None:
    token = db_vault.create_token(["app"], ttl=600)
    env = app_env(db_vault, postgres, token)
    result = run_cli(["check", "--format", "json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    rows = {row["path"]: row for row in report["rows"]}
    assert report["ok"] and rows["vault:database/creds/app"]["kind"] == "leased"
    assert rows["vault:database/creds/app"]["detail"].startswith("ttl 300s")
    assert rows["vault:secret/app/api"]["kind"] == "kv2"
    assert rows["vault:secret/app/api"]["detail"] == "v1"
    assert rows["vault:database/creds/app"]["used_by"] == ["variable DATABASE_URL"]
    assert db_vault.leases() == [], "check revokes what it read"
    assert "api-key-value" not in result.stdout + result.stderr
    table = run_cli(["check"], env)
    assert table.returncode == 0
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["PATH", "KIND", "VERSION/TTL", "USED", "BY", "STATUS"]
    assert all(line.endswith("ok") for line in lines)
    # Columns line up: every line has its kind where the KIND header starts.
    column = header.index("KIND")
    kinds = [line[column:].split()[0] for line in lines]
    assert kinds == ["config", "server", "login", "leased", "kv2"]


def test_check_fails_on_a_missing_key_and_a_denied_path(db_vault: Any, postgres: Any) -> None:
    token = db_vault.create_token(["app"], ttl=600)
    env = app_env(db_vault, postgres, token) | {"X": "vault:secret/app/api#nope",
                                                "Y": "vault:secret/other#k"}
    result = run_cli(["check"], env)
    assert result.returncode in (77, 78)
    assert "secret/app/api#nope" in result.stdout and "keys present: key" in result.stdout
    assert "permission denied" in result.stdout and "app" in result.stdout


@pytest.mark.parametrize(("extra", "code", "needle"), [
    ({"X": "vault:secret/app/missing#k"}, 78, "secret/app/missing"),
    ({"X": "vault:secret/app/api#missing"}, 78, "vault:secret/app/api#missing"),
    ({"X": "vault:secret/private#k"}, 77, "policies (app, default)"),
])
def test_exit_codes(db_vault: Any, extra: dict[str, str], code: int, needle: str) -> None:
    token = db_vault.create_token(["app"], ttl=600)
    env = {"VAULT_ADDR": db_vault.addr, "VAULT_TOKEN": token, **extra}
    result = run_cli(["--exec", "--", "true"], env)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and token not in result.stderr


def test_sealed_vault_exits_69_after_retrying(vault_server: Any) -> None:
    vault_server.seal()
    env = {"VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": vault_server.root_token,
           "X": "vault:secret/app#k", "ENTRYPOINT_STARTUP_TIMEOUT": "2s"}
    result = run_cli(["--exec", "--", "true"], env)
    assert result.returncode == 69, result.stderr
    retries = [line for line in result.stderr.splitlines() if "retry" in line]
    assert retries and all("sealed" in line and "s" in line.split("retry")[1]
                           for line in retries)
    assert "startup_timeout (2s)" in result.stderr


def test_token_auth_does_not_import_botocore(vault_server: Any) -> None:
    """botocore is for aws-iam only (read from -X importtime of the real process)."""

    from tests.helpers.cli import run_cli

    vault_server.write_kv("secret", "app", {"k": "v"})
    env = {"VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": vault_server.root_token,
           "X": "vault:secret/app#k"}
    result = run_cli(["--exec", "--", "true"], env, python_flags=["-X", "importtime"])
    assert result.returncode == 0, result.stderr
    names = {line.rsplit("|", 1)[1].strip().split(".")[0]
             for line in result.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "http" in names and "hvac" not in names  # Vault is reached with http.client
    assert "botocore" not in names and "boto3" not in names


def test_render_for_an_init_container_keeps_the_credentials_alive(db_vault: Any,
                                                                   postgres: Any) -> None:
    """``render --reveal`` hands credentials to an app that starts after we exit."""
    import psycopg

    token = db_vault.create_token(["app"], ttl=300)
    result = run_cli(["render", "--reveal", "--format", "json"],
                     app_env(db_vault, postgres, token))
    assert result.returncode == 0, result.stderr
    url = json.loads(result.stdout)["DATABASE_URL"]
    with psycopg.connect(url) as conn:  # the lease outlived the entrypoint
        assert conn.execute("select 1").fetchone() == (1,)
    assert db_vault.leases("database/creds/app")
