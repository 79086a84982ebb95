"""One failing file template does not block the others, against the real Vault and the
real binary (docs/templates.md, "When one template fails after start").

Two file templates: A reads ``secret/a#value`` and HUPs the app (app_probe journals A's
content at each HUP), B reads ``secret/b#value`` and runs a command that appends B's
rendered content to a marker file. B is made to fail after start by a new version of
``secret/b`` without the key ``value``: the poll sees a new version, so the successor
reads B again and its render fails (a deleted path would only fail the poll, which
never marks it dirty). At the same time ``secret/a`` gets a new value.

- ``keep`` (default): A is written and the app HUPed once within wait_max (+1 s of
  slack) of the poll that saw the change; B keeps its last good bytes; a warning names
  B's destination and ``secret/b``; the app is not restarted. When ``secret/b`` has a
  ``value`` again, B is re-rendered, its command runs once, and ``recovered:`` is logged.
- ``fatal``: the app is stopped and the entrypoint exits 78 naming the path.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.helpers.cli import wait_until
from tests.helpers.vault_rotation import APP_PROBE, Running, app_token, start

WAIT_MAX = 0.5
POLL = ["--poll-interval", "500ms", "--wait-min", "100ms", "--wait-max", f"{WAIT_MAX:g}s"]
TEMPLATE_A = "a={{ secret('secret/a').value }}\n"
TEMPLATE_B = "b={{ secret('secret/b').value }}\n"
SLACK = 1.0  # for a loaded 2-core machine: the bound is wait_max + SLACK after the poll


def _setup(vault: Any, tmp_path: Path, b_error: str | None = None) -> tuple[dict[str, str],
                                                                             Path, Path, Path]:
    a_dest, b_dest = tmp_path / "out/a.conf", tmp_path / "out/b.conf"
    marker = tmp_path / "b.marker"
    script = tmp_path / "record-b.sh"
    script.write_text(f"cat {shlex.quote(str(b_dest))} >> {shlex.quote(str(marker))}\n")
    extra = f"error_on_refresh = {json.dumps(b_error)}\n" if b_error else ""
    config = tmp_path / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        f"contents = {json.dumps(TEMPLATE_A)}\n"
        f"destination = {json.dumps(str(a_dest))}\n"
        'on_change = "signal:HUP"\n'
        "[[template]]\n"
        f"contents = {json.dumps(TEMPLATE_B)}\n"
        f"destination = {json.dumps(str(b_dest))}\n"
        f"on_change = {json.dumps(f'command:sh {shlex.quote(str(script))}')}\n" + extra)
    vault.write_kv("secret", "a", {"value": "alpha-first-7Qx2"})
    vault.write_kv("secret", "b", {"value": "bravo-first-9Kd4"})
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": app_token(vault),
           "ENTRYPOINT_CONFIG": str(config)}
    return env, a_dest, b_dest, marker


def _run(tmp_path: Path, env: dict[str, str], a_dest: Path, procs: list[Running]) -> Running:
    ep = start(tmp_path, env, POLL,
               [sys.executable, APP_PROBE, "{journal}", "--file", str(a_dest)])
    procs.append(ep)
    wait_until(lambda: ep.events("start") or ep.proc.poll() is not None, timeout=30,
               what="the app's first start")
    assert ep.events("start"), ep.log
    return ep


def _first_read_after(vault: Any, path: str, after: float) -> float:
    """Time of the first read of ``path`` answered after ``after`` (it saw the new
    version: Vault logs the answer just before sending it)."""
    reads = [r.timestamp for r in vault.requests
             if r.path == path and r.method == "GET" and r.timestamp >= after]
    return min(reads) if reads else 0.0


def _log_time(line: str) -> float:
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def test_a_failing_template_keeps_its_file_the_other_is_written_and_acted_on(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    vault = vault_server
    env, a_dest, b_dest, marker = _setup(vault, tmp_path)
    ep = _run(tmp_path, env, a_dest, procs)
    assert a_dest.read_text() == "a=alpha-first-7Qx2\n"
    b_good = b_dest.read_bytes()
    assert b_good == b"b=bravo-first-9Kd4\n"
    assert not marker.exists()  # on_change acts on changes, not on the first render
    wait_until(lambda: vault.count("secret/data/a") >= 2, timeout=10, what="a first poll")

    # B: a new version without `value`, seen failing first (so that it stays dirty); then
    # A: a new value. Written together, A's poll could come first and its successor then
    # had no B to try (seen once under load: B's warning after A's HUP).
    vault.write_kv("secret", "b", {"other": "x"})
    ep.wait_log(f"template {b_dest} not rendered", timeout=15)
    vault.write_kv("secret", "a", {"value": "alpha-second-3Pw8"})
    written = time.time()

    def hups() -> list[dict[str, Any]]:
        return ep.events("hup")

    wait_until(lambda: hups() or ep.proc.poll() is not None, timeout=15,
               what="the app's HUP with A's new value")
    seen_hup = time.time()
    wait_until(lambda: _first_read_after(vault, "secret/data/a", written), timeout=5,
               what="the poll that read the new secret/a")
    poll = _first_read_after(vault, "secret/data/a", written)
    deadline = poll + WAIT_MAX + SLACK
    a_written = a_dest.stat().st_mtime
    assert a_dest.read_text() == "a=alpha-second-3Pw8\n"
    assert a_written <= deadline, f"A written {a_written - poll:.2f}s after the poll"
    assert seen_hup <= deadline, f"HUP seen {seen_hup - poll:.2f}s after the poll"
    assert [h["file"] for h in hups()] == ["a=alpha-second-3Pw8\n"]

    warnings = ep.wait_log(f"template {b_dest} not rendered", timeout=10)
    assert "secret/b" in warnings[0] and "keeps its last good file" in warnings[0], warnings
    assert "retry in" in warnings[0], warnings[0]
    assert b_dest.read_bytes() == b_good
    assert not marker.exists()
    assert len(ep.events("start")) == 1 and ep.proc.poll() is None, ep.log
    # The successor that wrote A also tried B (a path held back by a failing template
    # stays dirty): A rendered, B's warning, then A's HUP, in that order.
    log = ep.log.splitlines()
    wrote_a = max(i for i, line in enumerate(log) if f"rendered {a_dest} " in line)
    hup = next(i for i, line in enumerate(log) if "signalled child SIGHUP" in line)
    assert wrote_a < hup and any(f"template {b_dest} not rendered" in line
                                 for line in log[wrote_a:hup]), ep.log

    # A later retry (running backoff) still fails and still keeps B's file.
    ep.wait_log(f"template {b_dest} not rendered", count=len(warnings) + 1, timeout=10)
    assert b_dest.read_bytes() == b_good

    # B has a value again: re-rendered, its command runs once, the recovery is logged.
    vault.write_kv("secret", "b", {"value": "bravo-second-5Hm1"})
    recovered = ep.wait_log(f"recovered: template {b_dest} rendered after", timeout=40)
    wait_until(marker.exists, timeout=10, what="B's command")
    assert b_dest.read_text() == "b=bravo-second-5Hm1\n"
    failures = len(ep.lines(f"template {b_dest} not rendered"))
    assert f"after {failures} failed attempts" in recovered[0], (recovered, failures)
    # Two more polls of secret/b (a second, spurious run of the command would come with
    # the successor or a stale retry, both before them), then the marker is read.
    reads = vault.count("secret/data/b")
    wait_until(lambda: vault.count("secret/data/b") >= reads + 2, timeout=10,
               what="two more polls of secret/b")
    code = ep.stop()
    assert code == 0, ep.log
    assert marker.read_text() == "b=bravo-second-5Hm1\n"
    assert [h["file"] for h in hups()] == ["a=alpha-second-3Pw8\n"]
    assert len(ep.events("start")) == 1, ep.log
    ep.assert_no_secret_logged("alpha-first-7Qx2", "alpha-second-3Pw8", "bravo-first-9Kd4",
                               "bravo-second-5Hm1")


def test_a_fatal_template_stops_the_app_and_exits_with_its_error(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    vault = vault_server
    env, a_dest, b_dest, marker = _setup(vault, tmp_path, b_error="fatal")
    ep = _run(tmp_path, env, a_dest, procs)
    b_good = b_dest.read_bytes()
    wait_until(lambda: vault.count("secret/data/b") >= 2, timeout=10, what="a first poll")

    vault.write_kv("secret", "b", {"other": "x"})
    code = ep.proc.wait(20)
    assert code == 78, ep.log
    errors = [line for line in ep.log.splitlines()
              if f"error: template {b_dest} (error_on_refresh = fatal)" in line]
    assert len(errors) == 1 and "secret/b" in errors[0], ep.log
    assert ep.events("stop"), "the app was not stopped"
    assert len(ep.events("start")) == 1
    assert b_dest.read_bytes() == b_good and not marker.exists()
    ep.assert_no_secret_logged("alpha-first-7Qx2", "bravo-first-9Kd4")
