"""The whole CLI on the local secrets directory: the embedded default, no server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import clean_env, run_cli, start_cli

SECRET_PASSWORD = "pw-Zq81-local-very-secret"
SECRET_DYNAMIC = "dyn-Kk29-password-secret"
SECRET_TOKEN = "tok-Yy55-api-token-secret"
ALL_SECRETS = (SECRET_PASSWORD, SECRET_DYNAMIC, SECRET_TOKEN)

DUMP_ENV = ("import json, os, sys; json.dump({'pid': os.getpid(), 'env': dict(os.environ)}, "
            "open(sys.argv[1], 'w'))")


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "database/creds").mkdir(parents=True)
    (root / "kv/app/db.json").write_text(json.dumps(
        {"username": "app", "password": SECRET_PASSWORD, "port": 5432}))
    (root / "database/creds/app.json").write_text(json.dumps(
        {"username": "v-app-1", "password": SECRET_DYNAMIC}))
    (root / "kv/app/api.toml").write_text(f'token = "{SECRET_TOKEN}"\n')
    return root


def base_env(secrets_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir),
        "DB_PASSWORD": "vault:kv/app/db#password",
        "DB_PORT": "vault:kv/app/db#port",
        "DATABASE_URL": "postgresql://${vault:database/creds/app#username}:"
                        "${vault:database/creds/app#password}@db/app",
        "API_TOKEN": "vault:kv/app/api#token",
        "PLAIN": "stays $$ exactly ${HOME} as is",
        "ESCAPED": "\\vault:literal",
    }
    env.update(extra)
    return env


def assert_no_secret(text: str) -> None:
    for value in ALL_SECRETS:
        assert value not in text


def test_exec_resolves_and_replaces_the_process(secrets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    env = clean_env(base_env(secrets_dir, VAULT_TOKEN="s.bootstrap-token-value"))
    proc = start_cli(["--exec", "--", sys.executable, "-c", DUMP_ENV, str(out)], env,
                     stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    seen = json.loads(out.read_text())
    assert seen["pid"] == proc.pid  # exec: same PID, nothing resident
    child = seen["env"]
    assert child["DB_PASSWORD"] == SECRET_PASSWORD
    assert child["DB_PORT"] == "5432"  # non-string values are JSON-encoded
    assert child["DATABASE_URL"] == f"postgresql://v-app-1:{SECRET_DYNAMIC}@db/app"
    assert child["API_TOKEN"] == SECRET_TOKEN
    assert child["PLAIN"] == "stays $$ exactly ${HOME} as is"
    assert child["ESCAPED"] == "vault:literal"
    assert not [k for k in child if k.startswith("ENTRYPOINT_")]
    assert "VAULT_TOKEN" not in child
    assert_no_secret(stderr)
    assert "s.bootstrap-token-value" not in stderr


def test_pass_env_keeps_a_bootstrap_variable(secrets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    result = run_cli(["--exec", "--pass-env", "VAULT_TOKEN", "--", sys.executable, "-c",
                      DUMP_ENV, str(out)], base_env(secrets_dir, VAULT_TOKEN="s.kept-token"))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["env"]["VAULT_TOKEN"] == "s.kept-token"


def test_each_path_is_read_once_per_run(secrets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    result = run_cli(["--exec", "--", sys.executable, "-c", DUMP_ENV, str(out)],
                     base_env(secrets_dir, DB_USER="vault:kv/app/db#username"))
    assert result.returncode == 0, result.stderr
    fetched = [line for line in result.stderr.splitlines() if "fetched vault:" in line]
    assert sorted(line.split("fetched ")[1] for line in fetched) == [
        "vault:database/creds/app", "vault:kv/app/api", "vault:kv/app/db"]


@pytest.mark.parametrize(
    ("variable", "value", "fragments"),
    [
        ("DB_PASSWORD", "vault:kv/app/db#passwrd",
         ["variable DB_PASSWORD", "kv/app/db#passwrd", "local secrets directory",
          "keys present: password, port, username"]),
        ("DB_PASSWORD", "vault:kv/app/missing#password",
         ["secret kv/app/missing not found in local secrets directory", "missing.json"]),
        ("DB_PASSWORD", "vault:kv/app/db", ["variable DB_PASSWORD", "names no key"]),
    ],
)
def test_missing_secret_fails_closed(secrets_dir: Path, tmp_path: Path, variable: str,
                                     value: str, fragments: list[str]) -> None:
    marker = tmp_path / "started"
    result = run_cli(["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                     base_env(secrets_dir, **{variable: value}))
    assert result.returncode == 78
    for fragment in fragments:
        assert fragment in result.stderr
    assert str(secrets_dir) in result.stderr or "names no key" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()  # never started without its secrets
    assert_no_secret(result.stderr)


def test_non_json_secret_file_names_the_file_not_its_content(secrets_dir: Path) -> None:
    (secrets_dir / "kv/app/broken.json").write_text('{"password": "' + SECRET_PASSWORD + '",,}')
    result = run_cli(["render"], base_env(secrets_dir, X="vault:kv/app/broken#password"))
    assert result.returncode == 78
    assert "broken.json:1 is not valid JSON" in result.stderr
    assert_no_secret(result.stderr + result.stdout)


def test_vault_reference_without_any_source_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(["render"], {"X": "vault:kv/app/db#password"})
    assert result.returncode == 78
    assert "needs VAULT_ADDR" in result.stderr and "ENTRYPOINT_LOCAL_SECRETS" in result.stderr


def test_render_redacts_unless_reveal(secrets_dir: Path) -> None:
    result = run_cli(["render"], base_env(secrets_dir))
    assert result.returncode == 0, result.stderr
    assert "DB_PASSWORD=<redacted>" in result.stdout.splitlines()
    assert "PLAIN" not in result.stdout  # only what the entrypoint resolved is shown
    assert_no_secret(result.stdout + result.stderr)
    revealed = run_cli(["render", "--reveal"], base_env(secrets_dir))
    assert f"DB_PASSWORD={SECRET_PASSWORD}" in revealed.stdout.splitlines()
    as_json = run_cli(["render", "--reveal", "--format", "json"], base_env(secrets_dir))
    assert json.loads(as_json.stdout)["API_TOKEN"] == SECRET_TOKEN


def test_usage_errors_exit_64_without_traceback() -> None:
    result = run_cli(["--no-such-flag", "--", "true"])
    assert result.returncode == 64
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli([])
    assert result.returncode == 64
    assert "no command to run" in result.stderr


def test_debug_shows_a_traceback(secrets_dir: Path) -> None:
    env = base_env(secrets_dir, DB_PASSWORD="vault:kv/app/db#nope")
    assert "Traceback" not in run_cli(["render"], env).stderr
    assert "Traceback" in run_cli(["render", "--debug"], env).stderr


def test_bad_setting_variable_exits_78_with_suggestion() -> None:
    result = run_cli(["render"], {"ENTRYPOINT_KILL_TIMEOT": "3"})
    assert result.returncode == 78
    assert "did you mean 'ENTRYPOINT_KILL_TIMEOUT'" in result.stderr


def test_json_logs(secrets_dir: Path) -> None:
    result = run_cli(["render"], base_env(secrets_dir, ENTRYPOINT_LOG_FORMAT="json"))
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines and all({"ts", "level", "msg"} <= set(line) for line in lines)
    assert_no_secret(result.stderr)


def test_version_and_module_entry() -> None:
    result = run_cli(["version"])
    assert result.returncode == 0
    assert result.stdout.startswith("vault-entrypoint ")


def test_command_not_found_in_exec_mode(secrets_dir: Path) -> None:
    result = run_cli(["--exec", "--", "no-such-command-xyz"], base_env(secrets_dir))
    assert result.returncode == 127
    assert "no-such-command-xyz" in result.stderr and "not found" in result.stderr


def test_local_path_loads_no_heavy_client(secrets_dir: Path, tmp_path: Path) -> None:
    """The local path imports none of hvac, botocore, consul, watchdog (issue 8, point 3)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, json\n"
        "from entrypoint.cli import main\n"
        "code = main(['render'])\n"
        "heavy = [m for m in ('hvac', 'botocore', 'consul', 'watchdog', 'requests') "
        "if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n")
    result = subprocess.run([sys.executable, str(probe)], env=clean_env(base_env(secrets_dir)),
                            capture_output=True, text=True, timeout=30)
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stderr
    assert os.environ.get("ENTRYPOINT_LOCAL_SECRETS") is None


def test_exec_gives_the_app_default_signal_dispositions(secrets_dir: Path) -> None:
    """Python ignores SIGPIPE and SIGXFSZ; execve would pass that on (tini's restore_signals)."""
    result = run_cli(["--exec", "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
                     base_env(secrets_dir))
    assert result.returncode == 0, result.stderr
    masks = dict(line.split(":\t") for line in result.stdout.splitlines())
    assert masks["SigBlk"] == "0000000000000000"
    ignored = int(masks["SigIgn"], 16)
    # What the test's own caller ignores (nohup: SIGHUP) is the caller's to pass on, as
    # execve does; what Python itself ignores must not reach the app.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"the app starts with {sig.name} ignored"
    assert ignored & ~_caller_ignores() == 0, masks


def _caller_ignores() -> int:
    """Signals ignored before Python started: the parent shell's (nohup), not Python's."""
    mask = int(next(line.split(":\t")[1] for line in
                    Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("SigIgn")), 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        if signal.getsignal(sig) == signal.SIG_IGN:  # set by Python at start-up
            mask &= ~(1 << (sig - 1))
    return mask


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_exec_as_another_user(secrets_dir: Path) -> None:
    result = run_cli(["--exec", "--user", "nobody", "--", "id", "-u"], base_env(secrets_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "65534"
    bad = run_cli(["--exec", "--user", "no-such-user-xyz", "--", "id"], base_env(secrets_dir))
    assert bad.returncode == 78
    assert "no-such-user-xyz" in bad.stderr
