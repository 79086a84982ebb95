"""Rotation end to end with the Vault test server and a real PostgreSQL (issue 6).

The app is ``pg_probe``: it logs in to PostgreSQL with its current credential in a loop
and journals every attempt, so "the app never holds a credential PostgreSQL rejects" is
a count of failed connections, not an inference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.vault_rotation import Running, app_token, pg_app, pg_roles, reap, start

FAST = ["--wait-min", "100ms", "--wait-max", "500ms"]


@pytest.fixture
def procs() -> Iterator[list[Running]]:
    running: list[Running] = []
    yield running
    reap(running)


@pytest.fixture
def database(vault_server: Any, postgres: Any) -> Any:
    vault_server.configure_database(postgres)
    return vault_server


def vault_env(vault: Any, token: str | None = None, **extra: str) -> dict[str, str]:
    return {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token or app_token(vault), **extra}


def test_dynamic_credentials_replaced_before_expiry_with_no_failed_connection(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    # Short leases: renewed every ~0.9 s until the 7 s max TTL caps them, then replaced.
    # Vault grants and PostgreSQL's VALID UNTIL are whole seconds, so a lease of a few
    # seconds needs an early renewal to learn of the cap with seconds to spare; with
    # real TTLs (an hour) the default 0.67 leaves twenty minutes.
    database.add_database_role("short", default_ttl=3, max_ttl=7)
    env = vault_env(database, DB_USER="vault:database/creds/short#username",
                    DB_PASSWORD="vault:database/creds/short#password")
    ep = start(tmp_path, env, [*FAST, "--renew-fraction", "0.3", "--replace-fraction", "0.5"],
               pg_app(postgres))
    procs.append(ep)
    users = ep.wait_users(4, timeout=30)
    assert ep.wait_log("revoked lease of vault:database/creds/short", 2)
    code = ep.stop()
    assert code == 0, ep.log
    connects = ep.connects()
    failed = ep.failed()
    print(f"\n[measure] dynamic env rotation: {len(set(users))} credentials, "
          f"{len(connects)} connections, {len(failed)} failed")
    assert failed == [], failed[:3]
    assert len(connects) > 50
    assert ep.lines("renewed lease of vault:database/creds/short")
    assert ep.lines("cannot be extended past")
    assert len(ep.lines("rotation: restarting the app")) >= 3
    # Every credential but the last was revoked once its successor ran; the last on exit.
    assert database.leases("database/creds/short") == []
    assert not pg_roles(postgres) & set(users)
    ep.assert_no_secret_logged()


def test_vault_outage_keeps_the_app_running_with_capped_quiet_retries(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    database.add_database_role("app", default_ttl=8, max_ttl=3600)
    database.write_kv("secret", "app/config", {"greeting": "hello"})
    env = vault_env(database, DB_USER="vault:database/creds/app#username",
                    DB_PASSWORD="vault:database/creds/app#password",
                    GREETING="vault:secret/app/config#greeting")
    ep = start(tmp_path, env, [*FAST, "--renew-fraction", "0.2", "--poll-interval", "500ms"],
               pg_app(postgres))
    procs.append(ep)
    ep.wait_log("renewed lease of vault:database/creds/app")
    database.stop()  # connections refused, as when Vault's host goes away
    ep.wait_log("renewing lease of vault:database/creds/app failed", 2)
    ep.wait_log("re-reading vault:secret/app/config failed", 3)
    outage = ep.lines("failed")
    database.start()
    ep.wait_log("recovered: renewed lease of vault:database/creds/app")
    ep.wait_log("recovered: re-read vault:secret/app/config")
    # Nothing stopped watching: renewals and polls go on after the recovery.
    after = len(ep.lines("renewed lease of"))
    ep.wait_log("renewed lease of vault:database/creds/app", after + 1)
    assert ep.stop() == 0, ep.log
    renew_failures = ep.lines("renewing lease of vault:database/creds/app failed")
    poll_failures = ep.lines("re-reading vault:secret/app/config failed")
    print(f"\n[measure] outage: {len(renew_failures)} renewal failure lines, "
          f"{len(poll_failures)} poll failure lines, {len(ep.failed())} failed connections")
    # One line per attempt, attempts spaced by capped exponential backoff with full jitter:
    # a few seconds of outage is a handful of lines, not a line per loop turn.
    assert 2 <= len(renew_failures) <= 10 and 3 <= len(poll_failures) <= 10, outage
    for line in renew_failures + poll_failures:
        assert "unreachable" in line and "; retry in " in line
    assert len(ep.lines("recovered:")) >= 2
    assert len(ep.events("start")) == 1  # the app ran on the last good values throughout
    assert ep.failed() == []
    ep.assert_no_secret_logged()


@pytest.mark.parametrize("policy", ["keep", "exit"])
def test_lease_expiring_while_vault_is_down_follows_on_expiry(
        policy: str, database: Any, postgres: Any, tmp_path: Path,
        procs: list[Running]) -> None:
    database.add_database_role("app", default_ttl=3, max_ttl=3600)
    env = vault_env(database, DB_USER="vault:database/creds/app#username",
                    DB_PASSWORD="vault:database/creds/app#password")
    ep = start(tmp_path, env, [*FAST, "--on-expiry", policy], pg_app(postgres))
    procs.append(ep)
    ep.wait_log("child started")
    database.stop()
    if policy == "exit":
        assert ep.proc.wait(20) == 69, ep.log
        assert ep.lines("expired and no successor could be fetched")
        assert ep.lines("on_expiry = exit")
        database.start()
        return
    line = ep.wait_log("expired and no successor could be fetched", timeout=20)
    assert "the app keeps running on the last values (on_expiry = keep)" in line[0]
    ep.wait_log("could not fetch new values", 2)
    assert len(ep.events("start")) == 1 and ep.proc.poll() is None
    database.start()
    ep.wait_log("recovered: new values fetched")
    users = ep.wait_users(2)
    assert ep.stop() == 0, ep.log
    assert len(set(users)) == 2
    # Said once, not at every retry.
    assert len(ep.lines("expired and no successor could be fetched")) == 1
    ep.assert_no_secret_logged()
