"""Running the real entrypoint against the Vault test server and PostgreSQL, for the
rotation tests: set-up, the app under it, its log, and the accounting of connections."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers.cli import REPO, start_cli, wait_until
from tests.helpers.journal import events

PG_PROBE = str(REPO / "tests/helpers/pg_probe.py")
APP_PROBE = str(REPO / "tests/helpers/app_probe.py")

# What an app's token may do: read its secrets, and give back and look up its leases.
APP_POLICY = {
    "database/creds/*": ["read"],
    "database/static-creds/*": ["read"],
    "secret/data/*": ["read"],
    "kv/*": ["read"],
    "sys/leases/revoke": ["update"],
}


def app_token(vault: Any, ttl: int = 3600) -> str:
    vault.set_policy("app", APP_POLICY)
    token: str = vault.create_token(["app"], ttl=ttl)
    return token


def approle_login(vault: Any, ttl: int = 600, max_ttl: int = 0) -> dict[str, str]:
    """The environment of an app that logs in with AppRole (so it creates its own token)."""
    vault.set_policy("app", APP_POLICY)
    if "approle/" not in vault.mounts(auth=True):
        vault.enable_auth("approle")
    role_id, secret_id = vault.engine("approle", auth=True).add_role(
        "app", ["app"], ttl=ttl, max_ttl=max_ttl)
    return {"ENTRYPOINT_VAULT_AUTH": "approle", "ENTRYPOINT_VAULT_APPROLE_ROLE_ID": role_id,
            "ENTRYPOINT_VAULT_APPROLE_SECRET_ID": secret_id}


def pg_roles(postgres: Any, prefix: str = "v-") -> set[str]:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                            (prefix + "%",)).fetchall()
    return {r[0] for r in rows}


@dataclass
class Running:
    """One entrypoint process with its app's journal and its stderr in a file."""

    proc: subprocess.Popen[bytes]
    journal: Path
    log_path: Path
    seen: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log.splitlines() if text in line]

    def wait_log(self, text: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        wait_until(lambda: len(self.lines(text)) >= count or self.proc.poll() is not None,
                   timeout=timeout, what=f"{count} log line(s) with {text!r}")
        found = self.lines(text)
        assert len(found) >= count, f"entrypoint exited; log:\n{self.log}"
        return found

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return events(self.journal, kind)

    def connects(self) -> list[dict[str, Any]]:
        return self.events("connect")

    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.connects() if not e["ok"]]

    def users(self) -> list[str]:
        """Database users the app started or reloaded with, in order."""
        return [e["user"] for e in self.events() if e["event"] in ("start", "hup")]

    def wait_users(self, count: int, timeout: float = 20.0) -> list[str]:
        wait_until(lambda: len(set(self.users())) >= count or self.proc.poll() is not None,
                   timeout=timeout, what=f"the app on {count} distinct credentials")
        assert len(set(self.users())) >= count, f"entrypoint exited; log:\n{self.log}"
        return self.users()

    def wait_logins(self, user: str, count: int = 10, timeout: float = 10.0) -> None:
        """Until the app has logged in ``count`` times as ``user``: the credential works."""
        wait_until(lambda: len([e for e in self.connects() if e["ok"] and e["user"] == user])
                   >= count, timeout=timeout, what=f"{count} logins as the app's user")

    def passwords(self) -> set[str]:
        return {e["password"] for e in self.events() if e.get("password")}

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def assert_no_secret_logged(self, *extra: str) -> None:
        log = self.log
        for value in [*self.passwords(), *extra]:
            assert value not in log, "a secret value reached the entrypoint's log"


def start(tmp_path: Path, env: dict[str, str], args: Sequence[str] = (),
          app: Sequence[str] | None = None, name: str = "ep") -> Running:
    journal = tmp_path / f"{name}.journal"
    log_path = tmp_path / f"{name}.log"
    argv = ["--kill-timeout", "5s", *args, "--", *(app or [sys.executable, PG_PROBE])]
    argv = [a.replace("{journal}", str(journal)) for a in argv]
    with log_path.open("wb") as log:
        proc = start_cli(argv, {"ENTRYPOINT_CONTROL_SOCKET": "", **env}, stderr=log,
                         stdout=subprocess.DEVNULL)
    return Running(proc, journal, log_path)


def pg_app(postgres: Any, *extra: str) -> list[str]:
    return [sys.executable, PG_PROBE, "{journal}", postgres.host, str(postgres.port), *extra]


def reap(running: Iterator[Running] | list[Running]) -> None:
    """After a failed test: stop each entrypoint as docker would, and make sure no app
    it started outlives it (an orphan would keep writing to a journal of a later run)."""
    for r in running:
        if r.proc.poll() is None:
            r.proc.terminate()
            try:
                r.proc.wait(10)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        for pid in {e["pid"] for e in r.events("start")}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
