"""Operating a running entrypoint (issue 17) on the local secrets directory: `entrypoint
status`, /metrics, /ready and /live, the ready file, stop_delay, sidecar mode and the
JSON fields of log events. Real processes; an edit of a secret file is the rotation.
Lease and Vault metrics are in test_ops_vault.py."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, clean_env, run_cli, start_cli
from tests.helpers.journal import events, wait_for
from tests.services.ports import free_port, wait_until

PROBE = str(REPO / "tests/helpers/app_probe.py")
SEED_1 = "seeded-" + secrets.token_hex(8)
SEED_2 = "seeded-" + secrets.token_hex(8)
# An app that tells, when it gets SIGTERM, whether the ready file was still there.
READY_PROBE = """
import json, os, signal, sys, time
journal, ready = sys.argv[1], sys.argv[2]
def write(event):
    with open(journal, "a") as f:
        f.write(json.dumps({**event, "pid": os.getpid(), "t": time.time(),
                            "ready": os.path.exists(ready)}) + "\\n")
def term(signum, frame):
    write({"event": "stop"})
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
write({"event": "start"})
while True:
    time.sleep(0.05)
"""


class Running:
    def __init__(self, tmp: Path, *args: str, command: list[str] | None = None,
                 config: str | None = None) -> None:
        self.tmp = tmp
        self.secrets = tmp / "secrets"
        (self.secrets / "kv/app").mkdir(parents=True, exist_ok=True)
        self.write(SEED_1)
        self.journal = tmp / "journal"
        self.ready = tmp / "ready"
        self.port = free_port()
        self.socket = f"@entrypoint-test-{secrets.token_hex(6)}"
        self.env = clean_env({
            "ENTRYPOINT_LOCAL_SECRETS": str(self.secrets),
            "ENTRYPOINT_CONTROL_SOCKET": self.socket,
            "ENTRYPOINT_LOG_FORMAT": "json",
            "DB_PASSWORD": "vault:kv/app/db#password",
        })
        if config is not None:
            (tmp / "entrypoint.toml").write_text(config)
            self.env["ENTRYPOINT_CONFIG"] = str(tmp / "entrypoint.toml")
        if command is None:
            command = [sys.executable, PROBE, str(self.journal), "DB_PASSWORD"]
        tail = ["--", *command] if command else []
        self.proc = start_cli(
            ["--kill-timeout", "5s", "--wait-min", "100ms", "--wait-max", "1s",
             "--ready-file", str(self.ready), "--metrics-listen", f"127.0.0.1:{self.port}",
             *args, *tail], self.env, stderr=subprocess.PIPE, text=True)
        self.stderr = ""

    def write(self, value: str) -> None:
        target = self.secrets / "kv/app/db.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({"password": value}))
        tmp.replace(target)  # atomically, as config management does

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled sample ``name``, or None."""
        for line in self.get("/metrics")[1].splitlines():
            if line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return None

    def status(self, fmt: str = "json") -> str:
        result = run_cli(["status", "--format", fmt], {"ENTRYPOINT_CONTROL_SOCKET": self.socket})
        assert result.returncode == 0, result.stderr
        return result.stdout

    def finish(self, *, stop: bool = True) -> int:
        """Stop it (``stop``), or wait for the stop already asked for: one more SIGTERM
        would mean "kill the app now"."""
        if stop and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, self.stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode

    def log_events(self) -> list[dict[str, object]]:
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    made: list[Running] = []
    yield made
    for run in made:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)  # so that it stops its app
            try:
                run.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.communicate()


def start(running: list[Running], tmp: Path, *args: str, **kw: object) -> Running:
    run = Running(tmp, *args, **kw)  # type: ignore[arg-type]
    running.append(run)
    return run


def test_status_shows_keys_and_app_never_a_value(tmp_path: Path,
                                                 running: list[Running]) -> None:
    run = start(running, tmp_path)
    first = wait_for(run.journal, "start")[0]
    wait_until(run.ready.exists, what="the ready file")
    snap = json.loads(run.status())
    assert snap["mode"] == "supervise" and snap["ready"] is True
    assert snap["app"]["pid"] == first["pid"] and snap["app"]["restarts"] == 0
    [key] = snap["keys"]
    assert key["key"] == "vault:kv/app/db" and key["kind"] == "local"
    assert key["failures"] == 0 and key["last_error"] is None
    run.write(SEED_2)
    second = wait_for(run.journal, "start", 2)[1]
    wait_until(lambda: json.loads(run.status())["app"]["restarts"] == 1, what="restarts 1")
    snap = json.loads(run.status())
    assert snap["app"]["pid"] == second["pid"]
    assert snap["app"]["last_action"] == "restart"
    assert "kv/app/db.json changed" in snap["app"]["last_action_reason"]
    table = run.status("table")
    assert "vault:kv/app/db" in table and f"app pid {second['pid']}" in table
    assert "restarts 1" in table
    assert run.finish() == 0
    for text in (json.dumps(snap), table, run.stderr):
        assert SEED_1 not in text and SEED_2 not in text


def test_metrics_counters_move_while_a_secret_rotates(tmp_path: Path,
                                                      running: list[Running]) -> None:
    run = start(running, tmp_path)
    wait_for(run.journal, "start")
    wait_until(run.ready.exists, what="the ready file")
    assert run.get("/ready") == (200, "ready\n")
    assert run.get("/live") == (200, "live\n")
    assert run.get("/nope")[0] == 404
    before = run.get("/metrics")[1]
    assert "entrypoint_app_restarts_total 0.0" in before
    assert "entrypoint_ready 1.0" in before
    assert 'entrypoint_replacements_total{kind="local"' not in before
    run.write(SEED_2)
    wait_for(run.journal, "start", 2)
    wait_until(lambda: run.metric("entrypoint_app_restarts_total") == 1.0,
               what="the restart counter")
    after = run.get("/metrics")[1]
    assert 'entrypoint_replacements_total{kind="local",outcome="ok"} 1.0' in after
    assert 'entrypoint_app_signals_total{signal="SIGTERM"}' not in after  # a stop, not a signal
    refreshed = run.metric("entrypoint_last_refresh_timestamp_seconds")
    assert refreshed is not None and abs(refreshed - time.time()) < 60
    assert run.finish() == 0
    assert SEED_1 not in before + after and SEED_2 not in before + after


def test_ready_file_goes_before_the_app_is_stopped_restart_and_exit(
        tmp_path: Path, running: list[Running]) -> None:
    probe = tmp_path / "ready_probe.py"
    probe.write_text(READY_PROBE)
    run = start(running, tmp_path, command=[sys.executable, str(probe),
                                            str(tmp_path / "journal"), str(tmp_path / "ready")])
    wait_for(run.journal, "start")
    wait_until(run.ready.exists, what="the ready file")
    assert run.ready.read_text().strip() == str(run.proc.pid)
    run.write(SEED_2)
    wait_for(run.journal, "start", 2)
    wait_until(run.ready.exists, what="the ready file after the restart")
    assert run.finish() == 0
    stops = events(run.journal, "stop")
    assert len(stops) == 2
    assert [s["ready"] for s in stops] == [False, False]  # restart, then exit
    assert not run.ready.exists()
    assert not list(tmp_path.glob(".ready-*"))


def test_stop_delay_removes_the_ready_file_then_drains_then_stops(
        tmp_path: Path, running: list[Running]) -> None:
    probe = tmp_path / "ready_probe.py"
    probe.write_text(READY_PROBE)
    run = start(running, tmp_path, "--stop-delay", "1500ms",
                command=[sys.executable, str(probe), str(tmp_path / "journal"),
                         str(tmp_path / "ready")])
    wait_for(run.journal, "start")
    wait_until(run.ready.exists, what="the ready file")
    asked = time.time()
    run.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not run.ready.exists(), timeout=1.0, what="the ready file to go")
    assert run.get("/ready")[0] == 503 and run.get("/live")[0] == 200  # draining, alive
    assert not events(run.journal, "stop")  # the app still serves while it drains
    [stop] = wait_for(run.journal, "stop", timeout=10)
    assert stop["t"] - asked >= 1.5 and stop["ready"] is False
    assert run.finish(stop=False) == 0
    drain = [e for e in run.log_events() if e.get("event") == "drain"]
    assert drain and drain[0]["delay"] == 1.5


STUBBORN = """
import json, os, signal, sys, time
journal = sys.argv[1]
def term(signum, frame):
    with open(journal, "a") as f:
        f.write(json.dumps({"event": "stop", "t": time.time()}) + "\\n")
signal.signal(signal.SIGTERM, term)  # and does not stop: SIGKILL must come
with open(journal, "a") as f:
    f.write(json.dumps({"event": "start", "pid": os.getpid()}) + "\\n")
while True:
    time.sleep(0.05)
"""


def test_kill_timeout_counts_from_the_apps_stop_signal_not_from_sigterm(
        tmp_path: Path, running: list[Running]) -> None:
    probe = tmp_path / "stubborn.py"
    probe.write_text(STUBBORN)
    run = start(running, tmp_path, "--stop-delay", "1s", "--kill-timeout", "1s",
                command=[sys.executable, str(probe), str(tmp_path / "journal")])
    wait_for(run.journal, "start")
    wait_until(run.ready.exists, what="the ready file")
    asked = time.time()
    run.proc.send_signal(signal.SIGTERM)
    [stop] = wait_for(run.journal, "stop", timeout=10)
    assert run.finish(stop=False) == 137  # SIGKILLed, as kill_timeout says
    ended = time.time()
    assert stop["t"] - asked >= 1.0  # the drain came first
    assert ended - stop["t"] >= 1.0  # then the whole kill_timeout


def test_a_second_sigterm_skips_the_drain_delay(tmp_path: Path,
                                                running: list[Running]) -> None:
    run = start(running, tmp_path, "--stop-delay", "60s")
    wait_for(run.journal, "start")
    wait_until(run.ready.exists, what="the ready file")
    run.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not run.ready.exists(), what="the ready file to go")
    second = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    wait_for(run.journal, "stop", timeout=10)
    assert time.monotonic() - second < 10
    assert run.finish(stop=False) == 0


SIDECAR_CONFIG = """
[[template]]
contents = "password={{ secret('kv/app/db').password }}\\n"
destination = "{out}"
on_change = "command:sh -c 'echo changed >> {marker}'"
"""


def test_sidecar_mode_keeps_files_fresh_runs_on_change_and_exits_0(
        tmp_path: Path, running: list[Running]) -> None:
    out, marker = tmp_path / "out.conf", tmp_path / "changed"
    run = start(running, tmp_path, command=[],
                config=SIDECAR_CONFIG.replace("{out}", str(out))
                .replace("{marker}", str(marker)))
    wait_until(run.ready.exists, what="the ready file")
    assert out.read_text() == f"password={SEED_1}\n"
    assert json.loads(run.status())["mode"] == "sidecar"
    run.write(SEED_2)
    wait_until(lambda: marker.exists() and out.read_text() == f"password={SEED_2}\n",
               what="the new file and its on_change command")
    assert run.proc.poll() is None
    assert run.finish() == 0
    assert not run.ready.exists()
    assert SEED_1 not in run.stderr and SEED_2 not in run.stderr
    assert any(e.get("event") == "command" for e in run.log_events())


def test_no_command_without_templates_is_still_a_usage_error() -> None:
    result = run_cli([])
    assert result.returncode == 64 and "no command to run" in result.stderr


def test_json_log_events_carry_their_fields(tmp_path: Path, running: list[Running]) -> None:
    run = start(running, tmp_path)
    first = wait_for(run.journal, "start")[0]
    run.write(SEED_2)
    wait_for(run.journal, "start", 2)
    assert run.finish() == 0
    logged = run.log_events()
    started = [e for e in logged if e.get("event") == "child_started"]
    assert started[0]["pid"] == first["pid"]
    restart = [e for e in logged if e.get("event") == "restart"]
    assert restart and "kv/app/db.json changed" in str(restart[0]["reason"])
    exited = [e for e in logged if e.get("event") == "child_exited"]
    assert exited and all(isinstance(e["exit_code"], int) for e in exited)
    stop = [e for e in logged if e.get("event") == "stop"]
    assert stop[0]["reason"] == "received SIGTERM" and stop[0]["pid"] != first["pid"]
    replaced = [e for e in logged if e.get("event") == "lease_replace"]
    assert replaced == []  # debug level: counted by the observer, not written at info
