"""The ``debug`` setting: a traceback with the error that stops the entrypoint, from the
flag, the variable or the TOML key, in every mode; never a traceback without it.

Found by an audit: the TOML key was never read, ``ENTRYPOINT_DEBUG=on`` was ignored (only
1/true/yes were), and supervise and sidecar mode logged a start-up error without its
traceback even with ``--debug``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli

# How each mode is started; each fails on the missing key of DB_PASSWORD.
MODES: dict[str, list[str]] = {
    "render": ["render"],
    "exec": ["--exec", "--", "true"],
    "supervise": ["--", "true"],
    "sidecar": [],  # no command, a file template: see env_of
}


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "kv/app/db.json").write_text(json.dumps({"password": "pw-debug-0123456789"}))
    return root


def env_of(secrets_dir: Path, mode: str, **extra: str) -> dict[str, str]:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
           "ENTRYPOINT_CONTROL_SOCKET": "",
           "DB_PASSWORD": "vault:kv/app/db#nope"}
    if mode == "sidecar":
        source = secrets_dir.parent / "a.tmpl"
        source.write_text("a\n")
        env["ENTRYPOINT_TEMPLATE"] = f"{source}:{secrets_dir.parent / 'out/a'}"
    env.update(extra)
    return env


def failed(args: list[str], env: dict[str, str]) -> str:
    """The stderr of a run that stops on the missing key (78)."""
    result = run_cli(args, env, timeout=30)
    assert result.returncode == 78, result.stderr[-2000:]
    assert "key vault:kv/app/db#nope not found" in result.stderr, result.stderr[-2000:]
    return result.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
def test_debug_flag_shows_a_traceback_in_every_mode(secrets_dir: Path, mode: str) -> None:
    env = env_of(secrets_dir, mode)
    assert "Traceback" in failed(["--debug", *MODES[mode]] if mode != "render"
                                 else ["render", "--debug"], env)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("word", ["on", "1", "yes", "True"])
def test_debug_variable_as_every_boolean(secrets_dir: Path, mode: str, word: str) -> None:
    env = env_of(secrets_dir, mode, ENTRYPOINT_DEBUG=word)
    assert "Traceback" in failed(MODES[mode], env)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_debug_toml_key(secrets_dir: Path, tmp_path: Path, mode: str) -> None:
    config = tmp_path / "entrypoint.toml"
    config.write_text("debug = true\n")
    env = env_of(secrets_dir, mode, ENTRYPOINT_CONFIG=str(config))
    assert "Traceback" in failed(MODES[mode], env)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_traceback_without_debug(secrets_dir: Path, tmp_path: Path, mode: str) -> None:
    assert "Traceback" not in failed(MODES[mode], env_of(secrets_dir, mode))
    off = env_of(secrets_dir, mode, ENTRYPOINT_DEBUG="off")
    assert "Traceback" not in failed(MODES[mode], off)
    # Higher places win: the flag over the variable, the variable over the file.
    no_flag = ["render", "--no-debug"] if mode == "render" else ["--no-debug", *MODES[mode]]
    assert "Traceback" not in failed(no_flag, env_of(secrets_dir, mode, ENTRYPOINT_DEBUG="1"))
    config = tmp_path / "entrypoint.toml"
    config.write_text("debug = true\n")
    assert "Traceback" not in failed(MODES[mode], env_of(
        secrets_dir, mode, ENTRYPOINT_CONFIG=str(config), ENTRYPOINT_DEBUG="no"))


def test_the_apps_own_debug_flag_is_not_ours(secrets_dir: Path) -> None:
    """``--debug`` after ``--`` belongs to the app's command."""
    env = env_of(secrets_dir, "exec")
    assert "Traceback" not in failed(["--exec", "--", "true", "--debug"], env)


def test_a_bad_debug_value_is_refused_without_traceback() -> None:
    result = run_cli(["render"], {"ENTRYPOINT_DEBUG": "maybe"})
    assert result.returncode == 78
    assert "variable ENTRYPOINT_DEBUG" in result.stderr
    assert "Traceback" not in result.stderr
