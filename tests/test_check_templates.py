"""``entrypoint check`` renders every template in memory, with render's errors (issue 18.2)."""

from __future__ import annotations

import json
from pathlib import Path

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
