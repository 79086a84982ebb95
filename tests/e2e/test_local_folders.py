"""A folder of the local secrets directory under the real binary: exported at start, a
collision is exit 78, ``check`` lists it, and a file added beneath it while the app runs
is one restart (the folder is watched whole)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import REPO, clean_env, run_cli, start_cli
from tests.helpers.journal import events, wait_for

PROBE = str(REPO / "tests/helpers/app_probe.py")


def put(root: Path, name: str, data: dict[str, str]) -> None:
    file = root / name
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(file)


def local_env(root: Path, **extra: str) -> dict[str, str]:
    return clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(root), "ENTRYPOINT_CONTROL_SOCKET": "",
                      "ENTRYPOINT_SECRETS": "secret/app/", **extra})


def test_a_collision_in_a_folder_is_exit_78_and_check_lists_the_folder(
        tmp_path: Path) -> None:
    put(tmp_path, "secret/app/db.json", {"password": "pw-local-0123"})
    put(tmp_path, "secret/app/more/api.json", {"key": "key-local-0123"})
    result = run_cli(["check"], local_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["vault:secret/app/", "local", "folder", "2", "secrets", "bulk", "export",
            "ok"] in rows
    put(tmp_path, "secret/app/more/db.json", {"PASSWORD": "pw-other-0123"})
    result = run_cli(["--", sys.executable, "-c", "pass"], local_env(tmp_path))
    assert result.returncode == 78, result.stderr
    assert ("bulk export: secret/app/more/db#PASSWORD and secret/app/db#password both "
            "become variable PASSWORD") in result.stderr


def test_a_file_added_beneath_a_folder_is_one_restart(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    put(root, "secret/app/db.json", {"password": "pw-local-0123"})
    journal = tmp_path / "journal"
    proc = start_cli(["--kill-timeout", "5s", "--wait-min", "100ms", "--wait-max", "1s", "--",
                      sys.executable, PROBE, str(journal), "PASSWORD", "API_KEY"],
                     local_env(root), stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(journal, "start")[0]
        assert first["env"] == {"PASSWORD": "pw-local-0123", "API_KEY": None}
        put(root, "secret/app/new/deep/api.json", {"api_key": "key-added-0123"})
        second = wait_for(journal, "start", 2)[1]
        assert second["env"] == {"PASSWORD": "pw-local-0123", "API_KEY": "key-added-0123"}
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert len(events(journal, "start")) == 2
    assert stderr.count("rotation: restarting the app") == 1
    assert "key-added-0123" not in stderr and "pw-local-0123" not in stderr
