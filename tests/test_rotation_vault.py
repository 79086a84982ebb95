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
