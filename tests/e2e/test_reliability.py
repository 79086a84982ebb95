"""Faults, each against the real entrypoint (``python -m entrypoint`` as a subprocess) and
the Vault test server; see docs/reliability.md for the table these rows belong to.

Waits are on conditions with deadlines (a log line, a journal event, the server's request
log); the only sleeps are the faults themselves (how long Vault stays down, where a
SIGKILL lands).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers.cli import REPO, run_cli, start_cli, wait_until
from tests.helpers.journal import events, wait_for
from tests.helpers.pid1 import is_alive
from tests.helpers.secrecy import seed_secret
from tests.services.ports import free_port

PROBE = str(REPO / "tests/helpers/app_probe.py")
KV_VALUE = seed_secret("kv-Reliab1lity-Zx4-secret")
POLICY = {"secret/data/*": ["read"], "database/creds/*": ["read"],
          "sys/leases/revoke": ["update"]}


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    journal: Path
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count(self, text: str) -> int:
        return sum(1 for line in self.log.splitlines() if text in line)

    def wait_log(self, text: str, count: int = 1, timeout: float = 15.0) -> None:
        wait_until(lambda: self.count(text) >= count or self.proc.poll() is not None,
                   timeout=timeout, what=f"{count} log line(s) with {text!r}")
        assert self.count(text) >= count, f"entrypoint exited {self.proc.returncode}:\n{self.log}"

    def starts(self) -> list[dict[str, Any]]:
        return events(self.journal, "start")


@pytest.fixture
def procs() -> Iterator[list[Running]]:
    """Entrypoints started by a test, stopped after it as docker stop would, and then no
    app of theirs may be left: a SIGKILLed entrypoint used to leave its app running."""
    running: list[Running] = []
    yield running
    for r in running:
        if r.proc.poll() is None:
            r.proc.terminate()
            try:
                r.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                r.proc.kill()  # the app then gets its parent-death signal (see start)
                r.proc.wait()
    apps = [e["pid"] for r in running for e in events(r.journal, "start")]
    wait_until(lambda: not any(is_alive(pid) for pid in apps), timeout=10,
               what="every app to end with its entrypoint")


def start(procs: list[Running], tmp_path: Path, env: dict[str, str], args: Sequence[str] = (),
          variables: Sequence[str] = ("APP_SECRET",)) -> Running:
    journal, log_path = tmp_path / "app.journal", tmp_path / "ep.log"
    argv = ["--kill-timeout", "5s", "--wait-min", "100ms", "--wait-max", "500ms",
            "--parent-death-signal", "KILL", *args, "--", sys.executable, PROBE, str(journal),
            *variables]
    with log_path.open("wb") as log:
        proc = start_cli(argv, {"ENTRYPOINT_CONTROL_SOCKET": "", **env},
                         stderr=log, stdout=subprocess.DEVNULL)
    running = Running(proc, journal, log_path)
    procs.append(running)
    return running


@pytest.fixture
def vault(vault_server: Any) -> Any:
    """The real Vault behind the fault proxy: outages, 429s and 5xx bursts are this file's
    subject, and a real server gives none of them on demand."""
    vault_server.write_kv("secret", "app", {"value": KV_VALUE})
    vault_server.set_policy("app", POLICY)
    return vault_server.proxy()


def approle_env(vault: Any, ttl: int = 600) -> dict[str, str]:
    """AppRole: a login the entrypoint can repeat, so a lost token can be replaced."""
    if "approle/" not in vault.mounts(auth=True):
        vault.enable_auth("approle")
    role_id, secret_id = vault.engine("approle", auth=True).add_role("app", ["app"], ttl=ttl,
                                                                     max_ttl=3600)
    return {"VAULT_ADDR": vault.addr, "ENTRYPOINT_VAULT_AUTH": "approle",
            "ENTRYPOINT_VAULT_APPROLE_ROLE_ID": role_id,
            "ENTRYPOINT_VAULT_APPROLE_SECRET_ID": secret_id,
            "APP_SECRET": "vault:secret/app#value"}


def token_env(vault: Any, **extra: str) -> dict[str, str]:
    return {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": vault.create_token(["app"], ttl=600),
            "APP_SECRET": "vault:secret/app#value", **extra}


# -- Vault down -------------------------------------------------------------------------

def test_vault_down_at_start_fails_closed(tmp_path: Path) -> None:
    """Nothing listens: retried with backoff until --startup-timeout, then exit 69; the
    app is never started."""
    addr = f"http://127.0.0.1:{free_port()}"
    marker = tmp_path / "started"
    began = time.monotonic()
    result = run_cli(["--startup-timeout", "2s", "--", sys.executable, "-c",
                      f"open({str(marker)!r}, 'w').close()"],
                     {"VAULT_ADDR": addr, "VAULT_TOKEN": "never-used-token-1",
                      "APP_SECRET": "vault:secret/app#value"}, timeout=30)
    took = time.monotonic() - began
    assert result.returncode == 69, result.stderr
    assert f"Vault at {addr}" in result.stderr and "unreachable" in result.stderr
    assert "gave up at startup_timeout (2s)" in result.stderr
    assert "retry 1 in" in result.stderr  # it did back off and retry, not give up at once
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert took < 2.0 + 5.0  # the timeout, plus interpreter start and one last attempt


def test_vault_down_mid_run_keeps_the_app_and_recovers(vault: Any, tmp_path: Path,
                                                       procs: list[Running]) -> None:
    """Vault stops while the app runs, across re-reads of the KV secret and a renewal of
    the token (ttl 4s, renewed at ~2.5s): the app is left alone, every failure is logged
    with its retry, and once Vault is back the entrypoint says it recovered."""
    env = approle_env(vault, ttl=4)
    run = start(procs, tmp_path, env, ["--poll-interval", "500ms"])
    wait_for(run.journal, "start")
    run.wait_log("vault: logged in with")
    vault.stop()
    down_at = time.monotonic()
    run.wait_log("re-reading vault:secret/app failed")
    run.wait_log("keeping the token alive failed", timeout=10)
    assert time.monotonic() - down_at < 10
    vault.start()
    run.wait_log("recovered: re-read vault:secret/app", timeout=40)
    wait_until(lambda: run.count("vault: token renewed") + run.count("logged in again") >= 1,
               timeout=20, what="the token renewed or replaced after the outage")
    assert run.proc.poll() is None
    assert len(run.starts()) == 1 and events(run.journal, "stop") == []
    assert "restarting" not in run.log
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(20) == 0


# -- rate limits and server errors at start-up -------------------------------------------

def test_429_storm_waits_at_least_retry_after(vault: Any) -> None:
    """Three 429s with Retry-After: 1 (delta seconds): the server's own request log shows
    at least a second between each 429 and the next request, and the run succeeds."""
    env = token_env(vault)
    vault.clear_requests()
    vault.rate_limit_next(3, retry_after=1.0, http_date=False)
    result = run_cli(["render"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "APP_SECRET=<redacted>" in result.stdout
    log = vault.requests
    limited = [i for i, r in enumerate(log) if r.status == 429]
    assert len(limited) == 3
    for i in limited:
        gap = log[i + 1].timestamp - log[i].timestamp
        # Both timestamps are taken after the answer is written: the client saw the 429
        # before the first one, so the gap it waited is at least this (less a few ms of
        # the server writing its second answer first).
        assert gap >= 1.0 - 0.02, f"retried after {gap:.3f}s, Retry-After said 1s"
    assert result.stderr.count("(Retry-After)") == 3


def test_5xx_burst_is_retried_to_success(vault: Any) -> None:
    env = token_env(vault)
    vault.fail_next(1, status=500)
    vault.fail_next(1, status=502)
    vault.fail_next(1, status=503, message="Vault is sealed")
    result = run_cli(["render"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("; retry ") == 3
    assert "server error (HTTP 500" in result.stderr and "sealed" in result.stderr
    assert sum(1 for r in vault.requests if r.status >= 500) == 3


# -- things revoked behind the entrypoint's back ---------------------------------------------

def test_token_revoked_behind_its_back_logs_in_again(vault: Any, tmp_path: Path,
                                                     procs: list[Running]) -> None:
    """An operator revokes the entrypoint's token: the next read gets 403, Vault confirms
    the token is gone, the entrypoint logs in again (AppRole) and carries on. The new
    token alone does not restart the app."""
    run = start(procs, tmp_path, approle_env(vault), ["--poll-interval", "300ms"])
    wait_for(run.journal, "start")
    logins = vault.count("auth/approle/login")
    (accessor,) = vault.tokens_issued_by("auth/approle/login")
    vault.revoke_token(accessor=accessor)
    run.wait_log("the token is no longer valid (HTTP 403); logging in again")
    wait_until(lambda: vault.count("auth/approle/login") == logins + 1, timeout=10,
               what="a second AppRole login")
    polls = vault.count("secret/data/app")
    wait_until(lambda: vault.count("secret/data/app") >= polls + 2, timeout=10,
               what="re-reads with the new token")
    assert run.proc.poll() is None and len(run.starts()) == 1
    assert "restarting" not in run.log


@pytest.fixture
def database(vault: Any, postgres: Any) -> Any:
    vault.configure_database(postgres)
    return vault


def _db_env(vault: Any) -> dict[str, str]:
    return token_env(vault, DB_USER="vault:database/creds/app#username",
                     DB_PASSWORD="vault:database/creds/app#password")


def _connects(postgres: Any, user: str, password: str) -> bool:
    try:
        with psycopg.connect(postgres.dsn(user, password), connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def test_database_role_dropped_behind_its_back(database: Any, postgres: Any, tmp_path: Path,
                                               procs: list[Running]) -> None:
    """The DBA drops the app's role in PostgreSQL; Vault still holds the lease and a lease
    lookup still finds it, so nothing can tell until the next renewal: that one fails
    (Vault cannot ALTER a role that is gone) and the entrypoint fetches a fresh credential
    at once and restarts the app on it, instead of retrying a renewal that cannot succeed."""
    database.add_database_role("app", default_ttl=6, max_ttl=3600)
    run = start(procs, tmp_path, _db_env(database), ["--lease-check-interval", "0"],
                variables=("DB_USER", "DB_PASSWORD"))
    (first,) = wait_for(run.journal, "start")
    user = first["env"]["DB_USER"]
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP ROLE "{user}"')
    assert not _connects(postgres, user, first["env"]["DB_PASSWORD"])
    starts = wait_for(run.journal, "start", count=2, timeout=20)
    second = starts[1]["env"]
    assert second["DB_USER"] != user
    assert _connects(postgres, second["DB_USER"], second["DB_PASSWORD"])
    # Replaced at the failed renewal (due at renew_fraction of 6s), not retried until
    # the lease expired: the log tells the two apart.
    assert run.count("lease of vault:database/creds/app cannot be kept (lease renewal: "
                     "Vault could not renew the secret") == 1
    assert "expired and no successor" not in run.log


# -- SIGKILL in the middle of a render -------------------------------------------------------

def test_sigkill_mid_render_leaves_old_or_new_never_a_mix(tmp_path: Path) -> None:
    """Render a ~4 MB file whose every line depends on the secret, flipping the secret
    between two values each round, and SIGKILL the entrypoint at a random point of the
    run (rendering, writing the temp file, renaming it). Each time the destination holds
    exactly the old or the new content."""
    sec = tmp_path / "sec/kv"
    sec.mkdir(parents=True)
    (tmp_path / "big.j2").write_text(
        "{% set s = secret('kv/app').v %}{% for i in range(60000) %}"
        "{{ i }} {{ s }} {{ s }} {{ s }}\n{% endfor %}")
    dest = tmp_path / "out/big.txt"
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
           "ENTRYPOINT_TEMPLATE": f"{tmp_path / 'big.j2'}:{dest}"}

    def expected(v: str) -> bytes:
        return "".join(f"{i} {v} {v} {v}\n" for i in range(60000)).encode()

    first, second = "a" * 26, "b" * 22  # different lengths: a mix could not pass for either
    contents = {v: expected(v) for v in (first, second)}
    (sec / "app.json").write_text(json.dumps({"v": first}))
    began = time.monotonic()
    assert run_cli(["render"], env).returncode == 0
    full = time.monotonic() - began
    assert dest.read_bytes() == contents[first]
    rng = random.Random(9)
    outcomes: dict[str, int] = {"old": 0, "new": 0}
    old = first
    # Where the kill lands follows the commit point: later after a kill that came too
    # early (old content), earlier after one too late (new content). So under any load
    # the kills gather around the write and the rename, the moment that matters.
    delay = full
    for round_ in range(40):  # bounded; normally ends after 12
        if round_ >= 12 and min(outcomes.values()) >= 1:
            break
        new = next(v for v in contents if v != old)
        (sec / "app.json").write_text(json.dumps({"v": new}))
        proc = start_cli(["render"], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay * rng.uniform(0.8, 1.2))  # the fault: where the SIGKILL lands
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        got = dest.read_bytes()
        assert got in (contents[old], contents[new]), "the destination holds a mix"
        if got == contents[new]:
            outcomes["new"] += 1
            old = new
            delay *= 0.8
        else:
            outcomes["old"] += 1
            delay *= 1.25
    # Both outcomes happened: kills landed before and after the rename.
    assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    temps = [p.name for p in dest.parent.iterdir() if p != dest]
    # A kill between creating the temp file and renaming it leaves the temp file; the
    # next render that writes this destination removes it (its writer's lock is gone).
    (sec / "app.json").write_text(json.dumps({"v": next(v for v in contents if v != old)}))
    assert run_cli(["render"], env).returncode == 0
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]
    print(f"\nSIGKILL mid-render: {outcomes}, temp files left by the kills: {len(temps)}, "
          "after the next render: 0")


def test_abandoned_temp_files_are_removed_but_not_a_live_writers(tmp_path: Path) -> None:
    from entrypoint.render import atomic

    dest = tmp_path / "app.conf"
    abandoned = tmp_path / ".app.conf.k3j4h5g6.tmp"
    abandoned.write_text("secret left by a killed writer")
    other = tmp_path / ".app.conf.old.tmp"  # not a name mkstemp gives: not ours to remove
    other.write_text("x")
    live = atomic.stage(dest, b"being written", 0o600)  # locked until commit or discard
    try:
        assert not abandoned.exists()  # stage() removed it first
        abandoned.write_text("another one")
        assert atomic.remove_abandoned(dest) == [abandoned]
        assert live.exists() and other.exists()  # a live writer's temp file is left be
    finally:
        atomic.commit(live, dest)
    assert dest.read_bytes() == b"being written"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".app.conf.old.tmp", "app.conf"]


# -- the app crashing ---------------------------------------------------------------------

def test_child_that_crashes_is_not_restarted(tmp_path: Path) -> None:
    """An app that exits by itself (here 3, as a crash loop would) ends the entrypoint
    with its code: exactly one start, no restart storm; the orchestrator decides."""
    (tmp_path / "sec/kv").mkdir(parents=True)
    (tmp_path / "sec/kv/app.json").write_text(json.dumps({"v": KV_VALUE}))
    journal = tmp_path / "starts"
    crash = (f"open({str(journal)!r}, 'a').write('start\\n'); import sys; sys.exit(3)")
    began = time.monotonic()
    result = run_cli(["--", sys.executable, "-c", crash],
                     {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
                      "APP_SECRET": "vault:kv/app#v", "ENTRYPOINT_CONTROL_SOCKET": ""},
                     timeout=30)
    assert result.returncode == 3, result.stderr
    assert journal.read_text() == "start\n"
    assert "child exited code=3" in result.stderr and "restarting" not in result.stderr
    assert time.monotonic() - began < 10


def test_sigkilled_child_exits_137_not_restarted(tmp_path: Path) -> None:
    (tmp_path / "sec/kv").mkdir(parents=True)
    (tmp_path / "sec/kv/app.json").write_text(json.dumps({"v": KV_VALUE}))
    result = run_cli(["--", sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"],
                     {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
                      "APP_SECRET": "vault:kv/app#v", "ENTRYPOINT_CONTROL_SOCKET": ""},
                     timeout=30)
    assert result.returncode == 137, result.stderr
    assert result.stderr.count("child started") == 1
    assert "out of memory?" in result.stderr

