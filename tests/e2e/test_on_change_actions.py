"""``on_change = "command:..."`` and ``"none"``, and how actions compose, with the real
binary on a local secrets folder: editing a secret's file is a rotation.

The command is a shell script that appends one line per run to a marker file, with the
``DB_PASSWORD`` it got in its environment and the rendered file it read: the line shows
that it ran once per change, after the file was in place, and with the new values.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, clean_env, start_cli, wait_until
from tests.helpers.journal import events, wait_for

PROBE = str(REPO / "tests/helpers/app_probe.py")
TEMPLATE = "password={{ secret('kv/app/db').password }}\n"


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "kv/app/db.json").write_text(json.dumps({"password": "value-1"}))
    (root / "kv/app/other.json").write_text(json.dumps({"x": "unchanged"}))
    return root


class Run:
    """One entrypoint supervising app_probe, its log in a file; stopped and reaped by the
    fixture whatever the test did."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.journal = tmp_path / "journal"
        self.rendered = tmp_path / "run/db.conf"
        self.marker = tmp_path / "marker"
        self.log_path = tmp_path / "entrypoint.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def recorder(self) -> str:
        """``command:ARGV`` that appends ``env=... file=...`` to the marker."""
        script = self.tmp / "record.sh"
        script.write_text(
            "printf 'env=%s file=%s\\n' \"${DB_PASSWORD-unset}\" "
            f"\"$(cat {shlex.quote(str(self.rendered))})\" >> {shlex.quote(str(self.marker))}\n")
        return f"command:sh {shlex.quote(str(script))}"

    def start(self, on_change: str, secrets: Path, *, splay: str = "0s",
              **env: str) -> None:
        config = self.tmp / "entrypoint.toml"
        config.write_text(
            "[[template]]\n"
            f"contents = {json.dumps(TEMPLATE)}\n"
            f"destination = {json.dumps(str(self.rendered))}\n"
            f"on_change = {json.dumps(on_change)}\n"
            f'[rotation]\nwait_min = "100ms"\nwait_max = "1s"\nsplay = "{splay}"\n')
        full = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets),
                          "ENTRYPOINT_CONTROL_SOCKET": "", "ENTRYPOINT_CONFIG": str(config),
                          "OTHER": "vault:kv/app/other#x", **env})
        with self.log_path.open("wb") as log:
            # Should a test fail and the fixture SIGKILL us, the app goes too.
            self.proc = start_cli(
                ["--kill-timeout", "5s", "--parent-death-signal", "KILL", "--",
                 sys.executable, PROBE, str(self.journal), "DB_PASSWORD", "OTHER",
                 "--file", str(self.rendered)], full, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1) -> None:
        wait_until(lambda: self.log().count(text) >= count, timeout=15.0,
                   what=f"{count} x {text!r} in the entrypoint's log")

    def marks(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []

    def wait_marks(self, count: int) -> list[str]:
        wait_until(lambda: len(self.marks()) >= count, timeout=15.0,
                   what=f"{count} line(s) in {self.marker}")
        return self.marks()

    def finish(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0, self.log()
        return self.log()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    runner = Run(tmp_path)
    yield runner
    proc = runner.proc
    if proc is not None and proc.poll() is None:  # a failed test: stop it, app and all
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # the app gets its parent-death signal
            proc.wait()


def write_secret(secrets: Path, value: str) -> None:
    target = secrets / "kv/app/db.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"password": value}))
    tmp.replace(target)  # atomically, as editors and config management do


def test_command_runs_once_per_change_with_the_new_file_and_the_app_keeps_running(
        secrets: Path, run: Run) -> None:
    run.start(run.recorder(), secrets)
    first = wait_for(run.journal, "start")[0]
    assert first["file"] == "password=value-1\n"
    write_secret(secrets, "value-2")
    assert run.wait_marks(1) == ["env=unset file=password=value-2"]
    # A second change is the second line: a duplicate run of the first would show value-2
    # twice, and a run per file event more lines than changes.
    write_secret(secrets, "value-3")
    assert run.wait_marks(2) == ["env=unset file=password=value-2",
                                 "env=unset file=password=value-3"]
    run.wait_log("command sh exited code=0", 2)
    log = run.finish()
    assert run.marks() == ["env=unset file=password=value-2", "env=unset file=password=value-3"]
    assert [e["pid"] for e in events(run.journal, "start")] == [first["pid"]]  # no restart
    assert events(run.journal, "hup") == []
    assert [e["pid"] for e in events(run.journal, "stop")] == [first["pid"]]  # our SIGTERM
    assert "restarting" not in log and "signalled child" not in log


def test_none_rewrites_the_file_and_leaves_the_app_alone(secrets: Path, run: Run) -> None:
    run.start("none", secrets)
    first = wait_for(run.journal, "start")[0]
    assert first["file"] == "password=value-1\n"
    write_secret(secrets, "value-2")
    wait_until(lambda: run.rendered.read_text() == "password=value-2\n", timeout=15.0,
               what="the file rendered again with value-2")
    # The engine says it acted (on nothing) once the file is in place: after that line
    # no action of this change can still be on its way.
    run.wait_log("values re-read, nothing the app sees changed")
    log = run.finish()
    assert [e["pid"] for e in events(run.journal, "start")] == [first["pid"]]
    assert events(run.journal, "hup") == []
    assert [e["pid"] for e in events(run.journal, "stop")] == [first["pid"]]
    assert "restarting" not in log and "signalled child" not in log
    assert "command" not in log and not run.marker.exists()


def test_env_change_and_command_file_restart_once_and_run_the_command_once(
        secrets: Path, run: Run) -> None:
    """One edit changes DB_PASSWORD in the env and the command template's output: the app
    restarts once and the command runs once, after the restart, with the new environment
    (the splay delays the restart; the command waits for it rather than run on the
    old environment)."""
    run.start(run.recorder(), secrets, splay="500ms", DB_PASSWORD="vault:kv/app/db#password")
    first = wait_for(run.journal, "start")[0]
    assert first["env"] == {"DB_PASSWORD": "value-1", "OTHER": "unchanged"}
    write_secret(secrets, "value-2")
    second = wait_for(run.journal, "start", 2)[1]
    assert second["env"]["DB_PASSWORD"] == "value-2" and second["pid"] != first["pid"]
    assert second["file"] == "password=value-2\n"
    assert run.wait_marks(1) == ["env=value-2 file=password=value-2"]
    run.wait_log("command sh exited code=0")
    log = run.finish()
    assert run.marks() == ["env=value-2 file=password=value-2"]
    assert [e["pid"] for e in events(run.journal, "start")] == [first["pid"], second["pid"]]
    assert [e["pid"] for e in events(run.journal, "stop")] == [first["pid"], second["pid"]]
    assert events(run.journal, "hup") == []
    assert log.count("rotation: restarting the app") == 1
    assert log.count("command sh started") == 1
    assert "value-1" not in log and "value-2" not in log
