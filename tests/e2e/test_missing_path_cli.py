"""A missing path names the variable that asked for it (docs/troubleshooting.md, 78:
``variable DB_PASSWORD: vault:secret/app/db#password: ...``) in every mode and for every
scheme; a template's ``secret()`` names the template instead.

Found by an audit: the paths are read up front, which skipped the code that names the
variable, so the message named none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli

MODES = {"supervise": ["--", "true"], "exec": ["--exec", "--", "true"], "render": ["render"]}


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "secret/app").mkdir(parents=True)
    (root / "secret/app/db.json").write_text(json.dumps({"password": "pw-Mi55ing-path-1"}))
    return root


def stderr_of(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, {"ENTRYPOINT_CONTROL_SOCKET": "", **env}, timeout=30)
    assert result.returncode == 78, result.stderr[-2000:]
    assert "pw-Mi55ing-path-1" not in result.stderr
    return result.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
def test_vault_path(secrets_dir: Path, mode: str) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir), "OK": "vault:secret/app/db#password",
           "DB_PASSWORD": "vault:secret/app/nope#password"}
    assert ("error: variable DB_PASSWORD: vault:secret/app/nope#password: secret "
            "secret/app/nope not found in local secrets directory") in stderr_of(
                MODES[mode], env)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_file_and_consul_references(secrets_dir: Path, tmp_path: Path, mode: str) -> None:
    missing = tmp_path / "no-such-file"
    env = {"CA": f"file:{missing}"}
    assert f"error: variable CA: file:{missing}: file {missing} does not exist" in (
        stderr_of(MODES[mode], env))
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir), "FLAG": "consul:config/nope"}
    assert "error: variable FLAG: consul:config/nope: consul key config/nope not found" in (
        stderr_of(MODES[mode], env))


def test_several_users_of_the_path(secrets_dir: Path) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           "DB_USER": "vault:secret/app/nope#user",
           "DATABASE_URL": "pg://${vault:secret/app/nope#user}@db"}
    assert "error: variables DATABASE_URL, DB_USER: vault:secret/app/nope: secret " in (
        stderr_of(["render"], env))


def test_a_templates_secret_names_the_template(secrets_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "app.conf.tmpl"
    source.write_text("pw={{ secret('secret/app/nope').password }}\n")
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           "ENTRYPOINT_TEMPLATE": f"{source}:{tmp_path / 'out/app.conf'}"}
    for args in (MODES["render"], MODES["supervise"]):
        stderr = stderr_of(args, env)
        assert f"error: {source}:1: secret secret/app/nope not found" in stderr
        assert "variable" not in stderr
