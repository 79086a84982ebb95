"""entrypoint check on the local directory (no server): rows, table, JSON, exit status,
and not one Vault module loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from entrypoint.commands.check import CheckRow, exit_code, render_json, render_table
from tests.helpers.cli import clean_env


def test_local_check_loads_nothing_of_vault(tmp_path: Path) -> None:
    (tmp_path / "kv/app").mkdir(parents=True)
    (tmp_path / "kv/app/db.json").write_text(json.dumps({"password": "local-pw-0123456789"}))
    probe = ("import sys, json\n"
             "from entrypoint.cli import main\n"
             "code = main(['check', '--format', 'json'])\n"
             "loaded = [m for m in sys.modules if m.startswith(('entrypoint.sources.vault', "
             "'hvac', 'botocore', 'requests'))]\n"
             "print(json.dumps({'code': code, 'loaded': loaded}))\n")
    env = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path),
                     "A": "vault:kv/app/db#password", "B": "vault:kv/app/db#user"})
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=30)
    *report, last = result.stdout.strip().splitlines()
    assert json.loads(last) == {"code": 78, "loaded": []}, result.stderr
    rows = json.loads("\n".join(report))["rows"]
    assert rows[-1]["kind"] == "local" and "kv/app/db#user" in rows[-1]["status"]
    assert "local-pw-0123456789" not in result.stdout + result.stderr


def test_table_json_and_exit_status() -> None:
    rows = [CheckRow("config", "config", "", "ok"),
            CheckRow("vault:kv/a", "kv2", "v12", "ok"),
            CheckRow("vault:database/creds/app", "-", "", "PermissionDenied: no", ok=False,
                     code=77)]
    table = render_table(rows).splitlines()
    assert table[0].startswith("PATH") and len({line.index(line.split()[1], len(
        line.split()[0])) for line in table}) == 1
    assert json.loads(render_json(rows))["ok"] is False
    assert exit_code(rows) == 77 and exit_code(rows[:2]) == 0
