"""``entrypoint check`` names what reads each path (column USED BY, field ``used_by``), as
``run`` and ``render`` name the variables of a missing path: otherwise a failed row says
what is missing but not what to fix.

A known gap: ``check`` said ``secret secret/app/nope not found`` where ``run`` said
``variable DB_PASSWORD: vault:secret/app/nope#password: ...``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from entrypoint.commands.check import CheckRow, render_table
from tests.helpers.cli import run_cli

VALUE = "pw-Ch3ck-users-0123"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "secret/app").mkdir(parents=True)
    (root / "secret/app/db.json").write_text(json.dumps({"password": VALUE}))
    return root


def check(env: dict[str, str], cwd: Path | None = None) -> tuple[int, dict[str, Any], str]:
    """The exit status, the JSON rows by path, and the table."""
    as_json = run_cli(["check", "--format", "json"], env, cwd=cwd)
    table = run_cli(["check"], env, cwd=cwd)
    assert as_json.returncode == table.returncode, table.stdout + table.stderr
    for output in (as_json, table):
        assert VALUE not in output.stdout + output.stderr
    rows = {row["path"]: row for row in json.loads(as_json.stdout)["rows"]}
    return table.returncode, rows, table.stdout


def cells(table: str, path: str) -> tuple[str, str]:
    """USED BY and STATUS of the table's row for ``path``: the last two cells."""
    line = next(line for line in table.splitlines() if line.startswith(path + " "))
    used_by, status = re.split(r"\s{2,}", line)[-2:]
    return used_by, status


def test_a_missing_path_names_its_variables(secrets_dir: Path) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           "OK": "vault:secret/app/db#password", "DB_PASSWORD": "vault:secret/app/nope#password",
           "DB_URL": "pg://${vault:secret/app/nope#user}@db"}
    code, rows, table = check(env)
    assert code == 78
    nope = rows["vault:secret/app/nope"]
    assert not nope["ok"] and nope["used_by"] == ["variable DB_PASSWORD", "variable DB_URL"]
    assert rows["vault:secret/app/db"]["used_by"] == ["variable OK"]
    assert rows["config"]["used_by"] == []
    assert table.splitlines()[0].split() == ["PATH", "KIND", "VERSION/TTL", "USED", "BY",
                                             "STATUS"]
    used_by, status = cells(table, "vault:secret/app/nope")
    assert used_by == "variables DB_PASSWORD, DB_URL"
    assert status.startswith("secret secret/app/nope not found")
    assert cells(table, "vault:secret/app/db") == ("variable OK", "ok")


def test_a_missing_key_names_the_variables_that_name_it(secrets_dir: Path) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           "A": "vault:secret/app/db#password", "B": "vault:secret/app/db#user"}
    code, rows, table = check(env)
    assert code == 78
    assert rows["vault:secret/app/db"]["used_by"] == ["variable B"]
    used_by, status = cells(table, "vault:secret/app/db")
    assert used_by == "variable B" and status.startswith("missing key secret/app/db#user")


def test_many_users_are_counted_in_the_table_and_listed_in_json(secrets_dir: Path) -> None:
    names = [f"V{i}" for i in range(5)]
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           **{name: f"vault:secret/app/nope#{name}" for name in names},
           "ENTRYPOINT_SECRETS": "secret/app/nope"}
    code, rows, table = check(env)
    assert code == 78
    assert rows["vault:secret/app/nope"]["used_by"] == [
        *[f"variable {n}" for n in names], "bulk export"]
    assert cells(table, "vault:secret/app/nope")[0] == "variable V0 and 4 more; bulk export"


def test_a_path_only_a_template_reads_names_the_template(secrets_dir: Path,
                                                         tmp_path: Path) -> None:
    (tmp_path / "app.tmpl").write_text("{{ secret('secret/app/nope').password }}\n")
    (tmp_path / "env.tmpl").write_text("{{ secret('secret/app/db').password }}\n")
    (tmp_path / "entrypoint.toml").write_text(
        f'[[template]]\nsource = "app.tmpl"\ndestination = "{tmp_path}/out/app.conf"\n'
        '[[env_template]]\nname = "DSN"\nsource = "env.tmpl"\n')
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir), "PW": "vault:secret/app/db#password",
           "ENTRYPOINT_CONFIG": str(tmp_path / "entrypoint.toml")}
    code, rows, table = check(env, cwd=tmp_path)
    assert code == 78
    nope = rows["vault:secret/app/nope"]
    assert not nope["ok"] and nope["code"] == 78
    assert nope["used_by"] == [f"template {tmp_path}/out/app.conf"]
    assert "secret secret/app/nope not found" in nope["status"]
    assert cells(table, "vault:secret/app/nope")[0] == f"template {tmp_path}/out/app.conf"
    assert rows["vault:secret/app/db"]["used_by"] == ["variable PW", "env_template DSN"]
    assert not rows[f"template {tmp_path}/out/app.conf"]["ok"]  # its own row, as before


def test_rows_without_users_keep_their_columns() -> None:
    rows = [CheckRow("config", "config", "", "ok"),
            CheckRow("vault:kv/a", "kv2", "v12", "ok", used_by=("variable A",))]
    header, first, second = render_table(rows).splitlines()
    assert first.endswith("ok") and second.endswith("variable A  ok")
    assert header.index("STATUS") == first.index("ok") == second.index("ok")


def test_on_vault_a_missing_path_and_key_name_their_variables(vault_server: Any) -> None:
    vault_server.write_kv("secret", "app/db", {"password": VALUE})
    token = vault_server.create_token(["root"], ttl=600)
    env = {"VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": token,
           "DB_PASSWORD": "vault:secret/app/db#password", "DB_USER": "vault:secret/app/db#user",
           "API_KEY": "vault:secret/app/nope#key"}
    code, rows, table = check(env)
    assert code == 78
    assert rows["vault:secret/app/nope"]["used_by"] == ["variable API_KEY"]
    assert rows["vault:secret/app/db"]["used_by"] == ["variable DB_USER"]
    assert rows["vault"]["used_by"] == [] and rows["login"]["ok"]
    assert cells(table, "vault:secret/app/nope")[0] == "variable API_KEY"
    assert token not in table
