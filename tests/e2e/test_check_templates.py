"""``entrypoint check`` renders every template in memory, with render's errors (issue 18.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import run_cli


def _setup(tmp_path: Path, template: str, env_template: str) -> dict[str, str]:
    (tmp_path / "sec/kv/app").mkdir(parents=True)
    (tmp_path / "sec/kv/app/db.json").write_text(json.dumps({"password": "pw-0123456789"}))
    (tmp_path / "app.tmpl").write_text(template)
    (tmp_path / "env.tmpl").write_text(env_template)
    (tmp_path / "entrypoint.toml").write_text(
        f'[[template]]\nsource = "app.tmpl"\ndestination = "{tmp_path}/out/app.conf"\n'
        '[[env_template]]\nname = "DSN"\nsource = "env.tmpl"\n')
    return {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
            "ENTRYPOINT_CONFIG": str(tmp_path / "entrypoint.toml")}


def _vault_template(tmp_path: Path, addr: str, token: str, name: str, text: str
                    ) -> dict[str, str]:
    """A config with one template, ``name`` holding ``text``, rendered to out/ (stem of
    ``name``), on the real Vault at ``addr``: the CLI's environment."""
    (tmp_path / name).write_text(text)
    (tmp_path / "entrypoint.toml").write_text(
        f'[[template]]\nsource = "{name}"\n'
        f'destination = "{tmp_path}/out/{Path(name).stem}"\n')
    return {"VAULT_ADDR": addr, "VAULT_TOKEN": token,
            "ENTRYPOINT_CONFIG": str(tmp_path / "entrypoint.toml")}


def test_typo_key_and_missing_path_fail_check_as_they_fail_render(tmp_path: Path) -> None:
    env = _setup(tmp_path, 'pw={{ secret("kv/app/db").pasword }}\n',
                 '{{ secret("kv/app/nothere").x }}\n')
    check = run_cli(["check", "--format", "json"], env, cwd=tmp_path)
    render = run_cli(["render"], env, cwd=tmp_path)
    assert (check.returncode, render.returncode) == (78, 78), check.stderr
    rows = {row["path"]: row for row in json.loads(check.stdout)["rows"]}
    env_row, file_row = rows["env_template DSN"], rows[f"template {tmp_path}/out/app.conf"]
    assert not env_row["ok"] and "kv/app/nothere not found" in env_row["status"]
    assert not file_row["ok"] and "no key 'pasword'" in file_row["status"]
    assert "keys present: password" in file_row["status"]
    # The same message render gives, and no Python class name in either.
    assert env_row["status"] in render.stderr
    assert "SecretNotFound" not in check.stdout + render.stderr
    assert "pw-0123456789" not in check.stdout + check.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_good_templates_pass_and_their_paths_are_listed(tmp_path: Path) -> None:
    env = _setup(tmp_path, 'pw={{ secret("kv/app/db").password }}\n',
                 'postgres://u:{{ secret("kv/app/db").password }}@db/app\n')
    (tmp_path / "out").mkdir()
    check = run_cli(["check"], env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    table = check.stdout
    assert "env_template DSN" in table and "template " in table
    assert "vault:kv/app/db" in table and "read by a template" in table
    assert "pw-0123456789" not in table + check.stderr
    assert list((tmp_path / "out").iterdir()) == []  # rendered in memory only


def test_template_syntax_error_is_a_row_with_exit_78(tmp_path: Path) -> None:
    env = _setup(tmp_path, "{% if %}\n", "ok\n")
    check = run_cli(["check"], env, cwd=tmp_path)
    assert check.returncode == 78
    row = next(line for line in check.stdout.splitlines() if line.startswith("template "))
    assert "app.tmpl" in row and "ok" not in row.split()[-1:]


def test_templates_on_real_vault_read_creds_and_leave_no_lease(
        database: Any, tmp_path: Path) -> None:
    """A template reading database/creds: check renders it with a real lease, then
    revokes it; a typo'd key in it is 78, as in render."""
    database.add_database_role("app", default_ttl=600, max_ttl=3600)
    database.write_kv("secret", "app", {"host": "db.internal"})
    token = database.create_token(["root"], ttl=600)
    env = _vault_template(tmp_path, database.addr, token, "pg.tmpl",
                          "{{ secret('database/creds/app').username }}@"
                          "{{ secret('secret/app').host }}\n")
    good = run_cli(["check", "--format", "json"], env, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    rows = {row["path"]: row for row in json.loads(good.stdout)["rows"]}
    assert rows["vault:database/creds/app"]["kind"] == "leased"
    assert rows["vault:secret/app"]["kind"] == "kv2"
    assert database.leases("database/creds/app") == []
    assert not (tmp_path / "out").exists()
    (tmp_path / "pg.tmpl").write_text("{{ secret('database/creds/app').usernme }}\n")
    bad = run_cli(["check"], env, cwd=tmp_path)
    assert bad.returncode == 78 and "no key 'usernme'" in bad.stdout
    assert database.leases("database/creds/app") == []


def test_a_path_only_a_template_reads_that_fails_otherwise_has_its_row(
        tmp_path: Path) -> None:
    """Not missing but unreadable: the path gets its row (with the error, its exit code
    and the template reading it) as a missing one does, not only the template's row."""
    env = _setup(tmp_path, 'pw={{ secret("kv/app/db").password }}\n',
                 '{{ secret("kv/app/broken").x }}\n')
    (tmp_path / "sec/kv/app/broken.json").write_text("not json")
    check = run_cli(["check", "--format", "json"], env, cwd=tmp_path)
    assert check.returncode == 78, check.stdout + check.stderr
    rows = {row["path"]: row for row in json.loads(check.stdout)["rows"]}
    row = rows["vault:kv/app/broken"]
    assert not row["ok"] and "is not valid JSON" in row["status"] and row["code"] == 78
    assert row["used_by"] == ["env_template DSN"]
    assert rows["vault:kv/app/db"]["ok"]


def test_a_path_only_a_template_reads_that_vault_refuses_has_its_row(
        vault_server: Any, tmp_path: Path) -> None:
    vault_server.write_kv("secret", "app", {"host": "db.internal"})
    vault_server.write_kv("secret", "other", {"host": "elsewhere"})
    vault_server.set_policy("app-only", {"secret/data/app": ["read"]})
    token = vault_server.create_token(["app-only"], ttl=600)
    env = _vault_template(tmp_path, vault_server.addr, token, "app.tmpl",
                          "{{ secret('secret/app').host }} {{ secret('secret/other').host }}\n")
    check = run_cli(["check", "--format", "json"], env, cwd=tmp_path)
    render = run_cli(["render"], env, cwd=tmp_path)
    assert check.returncode == render.returncode != 0, check.stdout + check.stderr
    rows = {row["path"]: row for row in json.loads(check.stdout)["rows"]}
    refused = rows["vault:secret/other"]
    assert not refused["ok"] and "permission denied" in refused["status"]
    assert refused["code"] == check.returncode
    assert refused["used_by"] == [f"template {tmp_path}/out/app"]
    assert rows["vault:secret/app"]["ok"]
    assert token not in check.stdout + check.stderr
