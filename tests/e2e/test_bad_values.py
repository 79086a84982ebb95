"""Values that cannot be used: refused at start with 78, and at rotation while the app
keeps running on the old ones (issue 14, item 6).

Before: a NUL byte arriving in a rotated secret stopped the app, then ``execve`` refused
the new environment and the entrypoint ended with "internal error in the supervisor"
(70), the app gone; a non-UTF-8 variable used in a file template and a secret file nested
200,000 deep ended in tracebacks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, clean_env, run_cli, start_cli, wait_until
from tests.helpers.journal import events, wait_for
from tests.helpers.secrecy import seed_secret

PROBE = str(REPO / "tests/helpers/app_probe.py")
GOOD = seed_secret("good-Value-Nn27-secret")
BAD = seed_secret("bad\x00Value-Nn27-secret")
NEXT = seed_secret("next-Value-Nn27-secret")


def write_secret(secrets: Path, data: object, name: str = "db") -> None:
    target = secrets / f"kv/app/{name}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(data if isinstance(data, str) else json.dumps(data))
    tmp.replace(target)  # atomically, as editors and config management do


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    write_secret(root, {"password": GOOD})
    return root


def test_nul_in_a_rotated_secret_keeps_the_app_running(
        secrets: Path, tmp_path: Path, popens: list[subprocess.Popen[bytes]]) -> None:
    """The bad generation is refused before the app is stopped; the next good one is used."""
    journal, log = tmp_path / "journal", tmp_path / "entrypoint.log"
    env = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), "ENTRYPOINT_CONTROL_SOCKET": "",
                     "DB_PASSWORD": "vault:kv/app/db#password"})
    with log.open("wb") as err:
        proc = start_cli(["--kill-timeout", "5s", "--wait-min", "100ms",
                          "--wait-max", "1s", "--", sys.executable, PROBE, str(journal),
                          "DB_PASSWORD"], env, stderr=err)
    popens.append(proc)
    first = wait_for(journal, "start")[0]
    assert first["env"] == {"DB_PASSWORD": GOOD}
    write_secret(secrets, {"password": BAD})
    wait_until(lambda: "holds a NUL byte" in log.read_text(), timeout=20,
               what="the bad value refused in the log")
    text = log.read_text()
    assert "variable DB_PASSWORD (vault:kv/app/db#password): the value holds a NUL byte" in text
    assert "the app keeps the last good values" in text
    assert proc.poll() is None, "the entrypoint ended"
    assert events(journal, "stop") == [] and len(events(journal, "start")) == 1
    write_secret(secrets, {"password": NEXT})
    second = wait_for(journal, "start", 2, timeout=60)[1]  # after the backoff
    assert second["env"] == {"DB_PASSWORD": NEXT}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert "internal error" not in log.read_text()


def _deep(depth: int) -> str:
    return '{"password": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(("case", "expect"), [
    ("nul-in-a-secret", "variable DB_PASSWORD (vault:kv/app/db#password): the value holds "
                        "a NUL byte"),
    ("nul-in-an-env-template", "variable RENDERED ([[env_template]] "),
    ("deep-json-secret", "secret file "),
    ("deep-json-file-reference", "#password not found in file "),
    ("deep-toml-config", "is nested too deeply to be read"),
    ("non-utf8-variable-in-a-file-template", "renders text that is not valid UTF-8"),
    ("oversized-value", "an environment variable holds at most 131072"),
])
def test_bad_values_at_start_are_refused_cleanly(secrets: Path, tmp_path: Path, case: str,
                                                 expect: str) -> None:
    config = tmp_path / "app.toml"
    config.write_text("")
    env: dict[str, str] = {"ENTRYPOINT_LOCAL_SECRETS": str(secrets),
                           "ENTRYPOINT_CONTROL_SOCKET": "", "ENTRYPOINT_CONFIG": str(config)}
    if case == "nul-in-a-secret":
        write_secret(secrets, {"password": BAD})
        env["DB_PASSWORD"] = "vault:kv/app/db#password"
    elif case == "nul-in-an-env-template":
        write_secret(secrets, {"password": BAD})
        config.write_text("[[env_template]]\nname = \"RENDERED\"\n"
                          "contents = \"{{ secret('kv/app/db').password }}\"\n")
    elif case == "deep-json-secret":
        write_secret(secrets, _deep(200_000))
        env["DB_PASSWORD"] = "vault:kv/app/db#password"
    elif case == "deep-json-file-reference":
        (tmp_path / "deep.json").write_text(_deep(200_000))
        env["DB_PASSWORD"] = f"file:{tmp_path}/deep.json#password"
    elif case == "deep-toml-config":
        config.write_text("a = " + "[" * 200_000 + "]" * 200_000 + "\n")
    elif case == "non-utf8-variable-in-a-file-template":
        config.write_text(f'[[template]]\ncontents = "{{{{ env(\'ODD\') }}}}"\n'
                          f'destination = "{tmp_path}/out/app.conf"\n')
    elif case == "oversized-value":
        write_secret(secrets, {"password": "x" * 200_000})
        env["DB_PASSWORD"] = "vault:kv/app/db#password"
    marker = tmp_path / "started"
    argv = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    full = clean_env(env)
    if case == "non-utf8-variable-in-a-file-template":
        full_bytes = {k.encode(): v.encode() for k, v in full.items()}
        full_bytes[b"ODD"] = b"caf\xe9-not-utf8"
        proc = run_cli(argv, full_bytes, clean=False)  # type: ignore[arg-type]
    else:
        proc = run_cli(argv, full, clean=False)
    assert proc.returncode == 78, proc.stderr
    assert expect in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert not marker.exists(), "the app was started"
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_nul_in_an_env_template(secrets: Path, tmp_path: Path) -> None:
    """``render`` (init containers) prints no environment it could not give an app."""
    write_secret(secrets, {"password": BAD})
    config = tmp_path / "app.toml"
    config.write_text("[[env_template]]\nname = \"RENDERED\"\n"
                      "contents = \"{{ secret('kv/app/db').password }}\"\n")
    proc = run_cli(["render", "--config", str(config), "--local-secrets", str(secrets)])
    assert proc.returncode == 78, proc.stderr
    assert "holds a NUL byte" in proc.stderr and "RENDERED" not in proc.stdout
