"""Rotation end to end with the Vault test server and a real PostgreSQL (issue 6).

The app is ``pg_probe``: it logs in to PostgreSQL with its current credential in a loop
and journals every attempt, so "the app never holds a credential PostgreSQL rejects" is
a count of failed connections, not an inference.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import wait_until
from tests.helpers.journal import wait_for
from tests.helpers.vault_rotation import (
    APP_PROBE,
    Running,
    app_token,
    approle_login,
    pg_app,
    pg_roles,
    start,
)

FAST = ["--wait-min", "100ms", "--wait-max", "500ms"]


def vault_env(vault: Any, token: str | None = None, **extra: str) -> dict[str, str]:
    return {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token or app_token(vault), **extra}


def test_dynamic_credentials_replaced_before_expiry_with_no_failed_connection(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    # Short leases: renewed every ~0.9 s until the 6 s max TTL caps them, then replaced.
    # Vault grants and PostgreSQL's VALID UNTIL are whole seconds, so a lease of a few
    # seconds needs an early renewal to learn of the cap with seconds to spare; with
    # real TTLs (an hour) the default 0.67 leaves twenty minutes.
    database.add_database_role("short", default_ttl=3, max_ttl=6)
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
    database = database.proxy()  # the real Vault's host going away: the proxy's stop()
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
    database = database.proxy()  # the real Vault's host going away: the proxy's stop()
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
        assert ep.lines("could not fetch new values") == []  # exiting: no more fetches
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


def approle_tokens(vault: Any) -> list[str]:
    accessors: list[str] = vault.tokens_issued_by("auth/approle/login")
    return accessors


@pytest.mark.parametrize("revoke", [True, False])
def test_shutdown_revokes_own_leases_and_token_after_the_app_stopped(
        revoke: bool, database: Any, postgres: Any, tmp_path: Path,
        procs: list[Running]) -> None:
    database.add_database_role("app", default_ttl=600, max_ttl=3600)
    env = {"VAULT_ADDR": database.addr, **approle_login(database),
           "DB_USER": "vault:database/creds/app#username",
           "DB_PASSWORD": "vault:database/creds/app#password"}
    args = [] if revoke else ["--no-revoke-on-exit"]
    ep = start(tmp_path, env, args, pg_app(postgres))
    procs.append(ep)
    wait_until(lambda: [e for e in ep.connects() if e["ok"]], what="a database login")
    user = ep.users()[0]
    assert user in pg_roles(postgres)
    assert len(database.leases("database/creds/app")) == 1 and approle_tokens(database)
    assert ep.stop() == 0, ep.log
    stopped_at = ep.events("stop")[0]["t"]
    revokes = [r for r in database.requests
               if r.path in ("sys/leases/revoke", "auth/token/revoke-self")]
    if not revoke:
        assert revokes == []
        assert len(database.leases("database/creds/app")) == 1
        assert user in pg_roles(postgres) and approle_tokens(database)
        return
    assert sorted(r.path for r in revokes) == ["auth/token/revoke-self", "sys/leases/revoke"]
    assert all(r.timestamp >= stopped_at and r.status < 300 for r in revokes), revokes
    # The lease first, while the token that may revoke it is still valid.
    assert [r.path for r in revokes] == ["sys/leases/revoke", "auth/token/revoke-self"]
    assert database.leases() == [] and approle_tokens(database) == []
    assert user not in pg_roles(postgres)
    assert ep.lines("revoked lease of vault:database/creds/app (shutdown)")
    assert ep.lines("vault: revoked our token (revoke_on_exit)")
    ep.assert_no_secret_logged()


def test_kv2_new_version_restarts_the_env_fed_app_once(
        database: Any, tmp_path: Path, procs: list[Running]) -> None:
    database.write_kv("secret", "app/db", {"password": "kv-value-1"})
    env = vault_env(database, DB_PASSWORD="vault:secret/app/db#password")
    ep = start(tmp_path, env, [*FAST, "--poll-interval", "300ms"],
               [sys.executable, APP_PROBE, "{journal}", "DB_PASSWORD"])
    procs.append(ep)
    first = wait_for(ep.journal, "start")[0]
    assert first["env"] == {"DB_PASSWORD": "kv-value-1"}
    database.write_kv("secret", "app/db", {"password": "kv-value-2"})
    second = wait_for(ep.journal, "start", 2)[1]
    assert second["env"] == {"DB_PASSWORD": "kv-value-2"} and second["pid"] != first["pid"]
    assert ep.stop() == 0, ep.log
    assert len(ep.events("start")) == 2
    assert ep.lines("vault:secret/app/db changed (v1 -> v2)")
    assert len(ep.lines("rotation: restarting the app")) == 1
    ep.assert_no_secret_logged("kv-value-1", "kv-value-2")


def test_kv2_new_version_rewrites_the_file_then_signals(
        database: Any, tmp_path: Path, procs: list[Running]) -> None:
    database.write_kv("secret", "app/db", {"password": "kv-value-1"})
    rendered = tmp_path / "run/db.conf"
    config = tmp_path / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        "contents = \"password={{ secret('secret/app/db').password }}\\n\"\n"
        f'destination = "{rendered}"\n'
        'on_change = "signal:SIGHUP"\n')
    env = vault_env(database, ENTRYPOINT_CONFIG=str(config))
    ep = start(tmp_path, env, [*FAST, "--poll-interval", "300ms"],
               [sys.executable, APP_PROBE, "{journal}", "--file", str(rendered)])
    procs.append(ep)
    first = wait_for(ep.journal, "start")[0]
    assert first["file"] == "password=kv-value-1\n"
    # Five versions in quick succession: one new file, one signal.
    for n in range(2, 7):
        database.write_kv("secret", "app/db", {"password": f"kv-value-{n}"})
    hup = wait_for(ep.journal, "hup")[0]
    assert hup["file"] == "password=kv-value-6\n" and hup["pid"] == first["pid"]
    database.write_kv("secret", "app/db", {"password": "kv-value-7"})
    hups = wait_for(ep.journal, "hup", 2)
    assert hups[1]["file"] == "password=kv-value-7\n"
    assert ep.stop() == 0, ep.log
    assert len(ep.events("start")) == 1 and len(ep.events("hup")) == 2
    ep.assert_no_secret_logged(*(f"kv-value-{n}" for n in range(1, 8)))


def test_renewal_refused_for_a_revoked_lease_fetches_a_new_one(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    import hvac

    database.add_database_role("app", default_ttl=4, max_ttl=3600)
    env = vault_env(database, DB_USER="vault:database/creds/app#username",
                    DB_PASSWORD="vault:database/creds/app#password")
    # No lease check: the renewal alone must notice.
    ep = start(tmp_path, env, [*FAST, "--renew-fraction", "0.5", "--lease-check-interval", "0"],
               pg_app(postgres))
    procs.append(ep)
    ep.wait_log("renewed lease of vault:database/creds/app")
    lease_id = database.leases("database/creds/app")[0]
    hvac.Client(url=database.addr, token=database.root_token).sys.revoke_lease(lease_id)
    users = ep.wait_users(2)
    ep.wait_logins(users[-1])
    assert ep.stop() == 0, ep.log
    assert ep.lines("cannot be kept (lease renewal: ")
    assert len(ep.events("start")) == 2
    print(f"\n[measure] revoked lease noticed at renewal: {len(ep.failed())} failed logins")
    assert database.count("sys/leases/lookup") == 0
    ep.assert_no_secret_logged()


def test_leases_replaced_before_the_token_that_made_them_ends(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    # Vault revokes a token's leases when the token ends. A token capped at its max TTL is
    # replaced by a new login; the leases the old one made must be replaced before it ends.
    database.add_database_role("app", default_ttl=600, max_ttl=3600)
    env = {"VAULT_ADDR": database.addr, **approle_login(database, ttl=4, max_ttl=7),
           "DB_USER": "vault:database/creds/app#username",
           "DB_PASSWORD": "vault:database/creds/app#password"}
    # renew_fraction also paces the token: early renewals learn of its cap in time.
    ep = start(tmp_path, env, [*FAST, "--renew-fraction", "0.3"], pg_app(postgres))
    procs.append(ep)
    users = ep.wait_users(3, timeout=30)
    ep.wait_logins(users[-1])
    assert ep.stop() == 0, ep.log
    failed = ep.failed()
    print(f"\n[measure] token relogin: {len(set(users))} credentials, {len(failed)} failed of "
          f"{len(ep.connects())} logins")
    assert failed == [], failed[:2]
    assert ep.lines("logged in again")
    assert ep.lines("made by the previous Vault token")
    assert database.leases("database/creds/app") == []
    ep.assert_no_secret_logged()


def test_lease_that_cannot_be_renewed_is_replaced_before_it_expires(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    database.add_database_role("app", default_ttl=4, max_ttl=3600)
    # A real database lease is renewable up to its max TTL; a lease Vault will not renew
    # is a fault only the proxy can give: Vault's own 400 for a non-renewable lease.
    database = database.proxy()
    env = vault_env(database, DB_USER="vault:database/creds/app#username",
                    DB_PASSWORD="vault:database/creds/app#password")
    ep = start(tmp_path, env, [*FAST, "--renew-fraction", "0.3"], pg_app(postgres))
    procs.append(ep)
    ep.wait_log("child started")
    database.fail_next(10**6, status=400, message="lease is not renewable",
                       path_prefix="sys/leases/renew")
    users = ep.wait_users(2)
    ep.wait_logins(users[-1])
    assert ep.stop() == 0, ep.log
    assert ep.lines("cannot be extended past")
    assert ep.failed() == [], ep.failed()[:2]
    print(f"\n[measure] lease not renewable: replaced, 0 failed of {len(ep.connects())} logins")
