"""The fast ``--exec`` path (entrypoint/commands/fast_exec.py): what it imports, and that
the app, the log and the exit status are the same as on the full path.

The full path is :func:`entrypoint.cli.main`, which never tries the fast one; the fast one
is tried by :func:`entrypoint.cli.console` (``python -m entrypoint``, the console script).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers.cli import clean_env

# What the fast path exists to avoid. Each comes back only when a case needs it (a TOML
# file: tomllib and re; a list in a JSON value: json) or on the full path.
HEAVY = ("argparse", "logging", "dataclasses", "inspect", "pathlib", "re", "enum", "typing",
         "json", "threading", "concurrent", "subprocess", "signal", "traceback", "ast",
         "tomllib", "ctypes.util", "hvac", "requests", "watchdog")
DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
FULL = [sys.executable, "-c", "import sys; from entrypoint.cli import main; sys.exit(main())"]
FAST = [sys.executable, "-m", "entrypoint"]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", re.MULTILINE)


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "secret/app").mkdir(parents=True)
    (root / "consul/config").mkdir(parents=True)
    files = {
        "api": {"token": "tok-123456789", "endpoint": "https://api.example.test"},
        "db": {"username": "appuser", "password": "pw-abcdefgh1234", "host": "db.local",
               "port": 5432, "ssl": True, "ratio": 0.25, "none": None},
        "aws": {"key": "k-0000000001", "secret": "s-0000000002", "region": "eu-west-1"},
        "feature": {"flag": "on", "level": 3},
    }
    for name, data in files.items():
        (root / f"secret/app/{name}.json").write_text(json.dumps(data))
    return root


def ten_refs(root: Path) -> dict[str, str]:
    return clean_env({
        "ENTRYPOINT_LOCAL_SECRETS": str(root),
        "R1": "vault:secret/app/api#token", "R2": "vault:secret/app/api#endpoint",
        "R3": "vault:secret/app/db#username", "R4": "vault:secret/app/db#password",
        "R5": "vault:secret/app/db#host", "R6": "vault:secret/app/db#port",
        "R7": "vault:secret/app/aws#key", "R8": "vault:secret/app/aws#secret",
        "R9": "vault:secret/app/aws#region", "R10": "vault:secret/app/feature#flag",
    })


def imported(stderr: str) -> list[str]:
    """Modules imported after the interpreter's own start-up (``site`` and what it loads:
    a .pth file of the test environment is not the entrypoint's doing)."""
    names: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            raw = line.rsplit("|", 1)[1]
            if raw.strip() == "site" and not raw.startswith("  "):
                names.clear()
            elif raw.strip() != "imported package":
                names.append(raw.strip())
    return names


def heavy(names: list[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


def run(argv: list[str], env: dict[str, str], *, importtime: bool = False
        ) -> subprocess.CompletedProcess[str]:
    command = list(argv)
    if importtime:
        command[1:1] = ["-X", "importtime"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def log_lines(stderr: str) -> list[str]:
    """The log without timestamps (text) or with ``ts`` dropped (JSON), no import lines."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            continue
        if line.startswith("{"):
            event = json.loads(line)
            event.pop("ts")
            out.append(json.dumps(event))
        else:
            out.append(STAMP.sub("", line))
    return out


def test_exec_with_ten_local_refs_imports_no_heavy_module(secrets: Path) -> None:
    result = run([*FAST, "--exec", "--", sys.executable, "-c", DUMP_ENV], ten_refs(secrets),
                 importtime=True)
    assert result.returncode == 0, result.stderr[-3000:]
    env = json.loads(result.stdout)
    assert env["R4"] == "pw-abcdefgh1234" and env["R6"] == "5432"  # the exec happened
    names = imported(result.stderr)
    assert "entrypoint.commands.fast_exec" in names  # the listing is really there
    assert heavy(names) == [], heavy(names)


def test_the_full_path_imports_them(secrets: Path) -> None:
    """The check above would pass on a listing that misses imports: this one sees them."""
    result = run([*FULL, "--exec", "--", "true"], ten_refs(secrets), importtime=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"argparse", "logging", "dataclasses"} <= set(heavy(imported(result.stderr)))


def both(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                        subprocess.CompletedProcess[str]]:
    return run([*FAST, *argv], env, importtime=True), run([*FULL, *argv], env)


def assert_same(fast: subprocess.CompletedProcess[str],
                full: subprocess.CompletedProcess[str]) -> None:
    # The full path fetches in threads: two keys of one path (db and db?version=2) are
    # logged in the order their reads ended. Compared in order but for that.
    ours, theirs = log_lines(fast.stderr), log_lines(full.stderr)
    assert sorted(ours) == sorted(theirs)
    assert [line for line in ours if "fetched" not in line] == [
        line for line in theirs if "fetched" not in line]
    assert fast.returncode == full.returncode
    if fast.stdout.startswith("{"):
        assert json.loads(fast.stdout) == json.loads(full.stdout)
    else:
        assert fast.stdout == full.stdout


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_app_gets_the_same_environment_and_log(secrets: Path, tmp_path: Path,
                                                   log_format: str) -> None:
    (secrets / "secret/app/feature.toml").write_text('flag = "toml"\nlist = [1, 2]\n')
    (secrets / "secret/app/feature.json").unlink()
    (secrets / "secret/app/db@2.json").write_text(json.dumps({"password": "pw-version-two"}))
    (secrets / "secret/app/nested.json").write_text(json.dumps({"obj": {"b": [1, 2.5], "a": 1}}))
    (secrets / "consul/config/flag").write_text("consul-value-1\r\n\n")
    # A secret equal to the command scrubs it from the "exec" line, on both paths.
    (secrets / "secret/app/cmd.json").write_text(json.dumps({"path": sys.executable}))
    env = ten_refs(secrets)
    env.update({
        "ENTRYPOINT_LOG_FORMAT": log_format, "ENTRYPOINT_LOG_LEVEL": "debug",
        "ENTRYPOINT_PASS_ENV": " VAULT_TOKEN , ENTRYPOINT_CONTROL_SOCKET",
        "ENTRYPOINT_CONTROL_SOCKET": "", "VAULT_TOKEN": "kept", "VAULT_ROLE_ID": "dropped",
        "VAULT_ADDR": "http://127.0.0.1:1",  # warned about, not used
        "ENTRYPOINT_MODE": "supervise",  # --exec wins
        "R10": "vault:secret/app/feature#flag", "LIST": "vault:secret/app/feature#list",
        "SSL": "vault:/secret/app/db/#ssl", "RATIO": "vault:secret/app/db#ratio",
        "NONE": "vault:secret/app/db#none", "NESTED": "vault:secret/app/nested#obj",
        "V2": "vault:secret/app/db#password?version=2",
        "URL": "postgresql://${vault:secret/app/db#username}:${vault:secret/app/db#password}"
               "@$${vault:literal}/$$x",
        "ESCAPED": "\\vault:not-a-ref", "TWICE": "\\\\consul:x",
        "CONSUL": "consul:config/flag", "CMD": "vault:secret/app/cmd#path",
        "EMPTY": "", "UNICODE": "caf\u00e9 \u2603",
    })
    fast, full = both(["run", "--exec", "--", sys.executable, "-c", DUMP_ENV], env)
    assert fast.returncode == 0, fast.stderr[-3000:]
    # The fast path did it: a TOML file and a list in a value need tomllib and json
    # (and re), nothing more.
    assert not {"argparse", "logging", "dataclasses", "inspect", "pathlib"} & set(
        imported(fast.stderr))
    assert_same(fast, full)
    child = json.loads(fast.stdout)
    assert child["URL"] == "postgresql://appuser:pw-abcdefgh1234@${vault:literal}/$x"
    assert (child["V2"], child["CONSUL"], child["ESCAPED"]) == (
        "pw-version-two", "consul-value-1", "vault:not-a-ref")
    assert (child["SSL"], child["NONE"], child["RATIO"], child["NESTED"]) == (
        "true", "null", "0.25", '{"a":1,"b":[1,2.5]}')
    assert child["VAULT_TOKEN"] == "kept" and "VAULT_ROLE_ID" not in child
    assert "ENTRYPOINT_LOCAL_SECRETS" not in child and child["ENTRYPOINT_CONTROL_SOCKET"] == ""
    assert any("<redacted>" in line for line in log_lines(fast.stderr))


def test_mode_from_the_environment(secrets: Path) -> None:
    env = ten_refs(secrets)
    env["ENTRYPOINT_MODE"] = "exec"
    fast, full = both(["--", sys.executable, "-c", DUMP_ENV], env)
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert "argparse" not in imported(fast.stderr)
    assert_same(fast, full)


@pytest.mark.parametrize("case", [
    "missing-key", "bad-ref", "not-found", "unknown-setting", "file-ref", "no-dir",
    "not-executable", "no-command", "bad-mode", "stray-word", "version",
    "data-path", "bad-json", "nul-byte", "missing-path", "missing-file",
])
def test_what_the_fast_path_leaves_to_the_full_path_ends_the_same(
        secrets: Path, tmp_path: Path, case: str) -> None:
    env = ten_refs(secrets)
    argv = ["--exec", "--", sys.executable, "-c", DUMP_ENV]
    script = tmp_path / "script"
    script.write_text("echo no shebang\n")
    script.chmod(0o644)
    (secrets / "secret/app/bad.json").write_text('{"a": "x"} trailing')
    (secrets / "secret/app/nul.json").write_text(json.dumps({"a": "x\0y"}))
    changes: dict[str, dict[str, str]] = {
        "missing-key": {"X": "vault:secret/app/db#nope"},
        "bad-ref": {"X": "vault:secret/app/db"},
        "unknown-setting": {"ENTRYPOINT_KIL_TIMEOUT": "3s"},
        "file-ref": {"X": f"file:{secrets}/secret/app/api.json#token"},
        "no-dir": {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "missing")},
        "bad-mode": {"ENTRYPOINT_MODE": "exce"},
        "data-path": {"X": "vault:secret/data/app/db#username"},
        "bad-json": {"X": "vault:secret/app/bad#a"},
        "nul-byte": {"X": "vault:secret/app/nul#a"},
        "missing-path": {"X": "vault:secret/app/nope#a"},
        "missing-file": {"X": f"file:{tmp_path}/nope"},
    }
    env.update(changes.get(case, {}))
    if case == "not-found":
        argv = ["--exec", "--", "no-such-command-xyz"]
    elif case == "not-executable":
        argv = ["--exec", "--", str(script)]
    elif case == "no-command":
        argv = ["--exec", "--"]
    elif case == "bad-mode":
        argv = argv[1:]
    elif case == "stray-word":
        argv = ["--exec", "stray", "--", "true"]
    elif case == "version":
        argv = ["--exec", "--version", "--", "true"]
    fast, full = both(argv, env)
    assert_same(fast, full)
    if case == "not-executable":
        # Handled by the fast path itself, after the point of no return.
        assert fast.returncode == 126 and "argparse" not in imported(fast.stderr)
    elif case not in ("file-ref", "version"):
        assert fast.returncode != 0
    if case in ("missing-path", "missing-file"):
        # Named after the variable that asked, as docs/troubleshooting.md says.
        assert f"error: variable X: {changes[case]['X']}: " in fast.stderr


def test_copies_agree_with_the_originals() -> None:
    from entrypoint import secret
    from entrypoint.commands import fast_exec, fast_local
    from entrypoint.config.settings import SETTINGS
    from entrypoint.plan import resolve
    from entrypoint.sources.local import folder

    assert fast_exec.MAX_ENV_STRING == resolve.MAX_ENV_STRING
    assert fast_exec.MIN_SCRUBBED == secret.MIN_SCRUBBED
    assert fast_exec.REDACTED == secret.REDACTED
    assert fast_local.EXTENSIONS == folder.EXTENSIONS
    variables = {setting.variable for setting in SETTINGS}
    assert variables >= fast_exec.HANDLED


@pytest.mark.parametrize("text", ["/tmp/x", "/tmp//x/", "//x", "///x", "./a/./b", ".", "a/..",
                                  "rel/", "/", "//", "a//b/../c"])
def test_pure_path_is_pathlibs(text: str) -> None:
    from entrypoint.commands.fast_exec import pure_path

    assert pure_path(text) == str(PurePosixPath(text))


@pytest.mark.parametrize("doc", ['{"a": "b"}', ' \n{"a": 1, "b": [1, {"c": null}]}\r\n',
                                 '{"x": 1e400, "y": -0.0, "z": NaN, "w": -Infinity}',
                                 '{"a": "\\u00e9\\ud83d\\ude00", "a": "dup"}', "[1]", '"s"'])
def test_json_is_jsons(doc: str) -> None:
    from entrypoint.commands.fast_local import json_dumps, json_loads

    ours, theirs = json_loads(doc), json.loads(doc)
    assert json.dumps(ours) == json.dumps(theirs)
    if isinstance(theirs, dict):
        for value in theirs.values():
            if not isinstance(value, str):
                assert json_dumps(value) == json.dumps(value, separators=(",", ":"),
                                                       sort_keys=True)


@pytest.mark.parametrize("doc", ['{"a": 1} x', "", "\ufeff{}", '{"a": }', '{"a": "\x01"}'])
def test_json_errors_go_to_the_full_path(doc: str) -> None:
    from entrypoint.commands.fast_local import json_loads

    with pytest.raises(Exception):  # noqa: B017 -- any: the caller falls back on all
        json_loads(doc)
