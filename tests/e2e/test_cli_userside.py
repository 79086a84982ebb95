"""The command line as a new user meets it (issue 18.6): help, --version, a command
without --, help pages listing only what a subcommand reads, defaults as users write
them, and render's dotenv and env-file output read back by a real shell and by docker's
--env-file rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from entrypoint import __version__
from entrypoint.cli import SUBCOMMANDS
from entrypoint.commands.help import USED_BY, settings_for
from entrypoint.config.settings import BY_NAME, SETTINGS
from tests.helpers.cli import run_cli

VALUES = {
    "PLAIN": "plain-value_1.2:3@x%+,=",
    "SPACES": "with  two  spaces ",
    "SINGLE": "it's",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME ${PATH} $(id)",
    "BACKQUOTE": "`id`",
    "BACKSLASH": "back\\slash\\n",
    "TILDE": "~/x:~root",
    "GLOB": "*?[a]",
    "HASH": "#not-a-comment",
    "REDIRECT": "a<b>c|d&e;f",
    "UNICODE": "pässwörd ✓",
    "EMPTY": "",
    "TAB": "a\tb",
    "MULTILINE": "line one\nline two\n\nlast\n",
    "CR": "ends with cr\r",
}


def _render(tmp_path: Path, values: dict[str, str], fmt: str,
            ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sec/kv").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sec/kv/all.json").write_text(json.dumps(values))
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec")}
    env.update({name: f"vault:kv/all#{name}" for name in values})
    # Bytes, decoded by hand: text mode would turn the \r of a value into \n.
    result = run_cli(["render", "--reveal", "--format", fmt], env, text=False)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_dotenv_round_trips_through_set_a_dot(tmp_path: Path, shell: str) -> None:
    result = _render(tmp_path, VALUES, "dotenv")
    assert result.returncode == 0, result.stderr
    dotenv = tmp_path / "app.env"
    dotenv.write_bytes(result.stdout.encode())
    dump = ("import json, os, sys; print(json.dumps({n: os.environ.get(n) "
            "for n in sys.argv[1:]}))")
    back = subprocess.run(
        [shell, "-c", 'set -a; . "$1"; shift; exec python3 -c "$@"', shell, str(dotenv),
         dump, *VALUES], capture_output=True, text=True, timeout=30, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert json.loads(back.stdout) == VALUES


def _docker_env_file(text: str) -> dict[str, str]:
    """docker's --env-file reader (docker/cli opts/envfile.go parseKeyValueFile): lines
    split at \\n with a trailing \\r dropped (Go's bufio.ScanLines), leading white space
    trimmed, empty and # lines skipped, NAME=VALUE cut at the first =, the value verbatim."""
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert name and not re.search(r"\s", name), f"docker refuses the line {line!r}"
        out[name] = value
    return out


def test_env_file_round_trips_through_dockers_rules(tmp_path: Path) -> None:
    single_line = {k: v for k, v in VALUES.items() if k not in ("MULTILINE", "CR")}
    result = _render(tmp_path, single_line, "env-file")
    assert result.returncode == 0, result.stderr
    assert _docker_env_file(result.stdout) == single_line


@pytest.mark.parametrize("name", ["MULTILINE", "CR"])
def test_env_file_refuses_what_docker_would_cut(tmp_path: Path, name: str) -> None:
    result = _render(tmp_path, {name: VALUES[name]}, "env-file")
    assert result.returncode == 78 and result.stdout == ""
    assert f"variable {name}: its value holds a line break, which docker --env-file " \
           "cannot carry" in result.stderr
    assert VALUES[name].strip() not in result.stderr


def test_a_command_without_dashes_hints_at_them() -> None:
    result = run_cli(["echo", "hi"])
    assert result.returncode == 64
    assert "'echo' is not a subcommand" in result.stderr
    assert "entrypoint [OPTIONS] -- echo hi" in result.stderr
    flag = run_cli(["--no-such-flag"])
    assert flag.returncode == 64 and "unrecognized arguments: --no-such-flag" in flag.stderr


def test_version_flag_and_help_subcommand() -> None:
    for args in (["--version"], ["version"]):
        result = run_cli(args)
        assert result.returncode == 0 and result.stdout.startswith(
            f"vault-entrypoint {__version__} ")
    overview = run_cli(["help"])
    assert overview.returncode == 0
    for sub in SUBCOMMANDS:
        assert re.search(rf"^  {sub} +\S", overview.stdout, re.M), sub
    one = run_cli(["help", "rotate"])
    assert one.returncode == 0 and one.stdout.startswith("usage: entrypoint rotate")
    assert run_cli(["help", "nope"]).returncode == 64


@pytest.mark.parametrize("sub", ["render", "check", "rotate", "status"])
def test_help_lists_only_the_settings_a_subcommand_reads(sub: str) -> None:
    text = run_cli([sub, "--help"]).stdout
    shown = {s.flag for s in SETTINGS if re.search(rf"(?<![\w-]){s.flag}(?![\w-])", text)}
    assert shown == {s.flag for s in settings_for(sub)}
    assert "--kill-timeout" not in text and "--stop-signal" not in text


def test_run_help_lists_every_setting() -> None:
    assert USED_BY["run"] is None and settings_for("run") == SETTINGS


def test_defaults_are_shown_as_users_write_them() -> None:
    text = " ".join(run_cli(["--help"]).stdout.split())
    assert f"(default: 1m) [{BY_NAME['startup_timeout'].variable}]" in text
    assert f"(default: true) [{BY_NAME['revoke_on_exit'].variable}]" in text
    assert "(default: 60.0)" not in text and "(default: True)" not in text
