"""Status and metrics of an entrypoint on the real Vault with dynamic PostgreSQL
credentials (issue 17): the lease, token and Vault request metrics move while a lease is
renewed and replaced, the log events carry their fields, and neither a scrape nor a
status costs a request to Vault (counted in Vault's own audit log)."""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.cli import run_cli, wait_until
from tests.helpers.vault_rotation import Running, app_token, pg_app, start
from tests.services.ports import free_port

FAST = ["--wait-min", "100ms", "--wait-max", "500ms"]


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics: ``name{labels}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


def launch(database: Any, postgres: Any, tmp_path: Path, procs: list[Running],
           role: str, *args: str) -> tuple[Running, int, str]:
    port = free_port()
    sock = f"@entrypoint-test-{secrets.token_hex(6)}"
    env = {"VAULT_ADDR": database.addr, "VAULT_TOKEN": app_token(database),
           "DB_USER": f"vault:database/creds/{role}#username",
           "DB_PASSWORD": f"vault:database/creds/{role}#password",
           "ENTRYPOINT_CONTROL_SOCKET": sock, "ENTRYPOINT_LOG_FORMAT": "json",
           "ENTRYPOINT_METRICS_LISTEN": f"127.0.0.1:{port}"}
    ep = start(tmp_path, env, [*FAST, *args], pg_app(postgres))
    procs.append(ep)
    ep.wait_log("child started")
    return ep, port, sock


def status(sock: str) -> dict[str, Any]:
    result = run_cli(["status", "--format", "json"], {"ENTRYPOINT_CONTROL_SOCKET": sock})
    assert result.returncode == 0, result.stderr
    snap: dict[str, Any] = json.loads(result.stdout)
    return snap


def test_lease_metrics_and_counters_move_while_a_lease_rotates(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    database.add_database_role("short", default_ttl=3, max_ttl=6)
    ep, port, sock = launch(database, postgres, tmp_path, procs, "short",
                            "--renew-fraction", "0.3", "--replace-fraction", "0.5")
    before = scrape(port)
    key = 'key="vault:database/creds/short",kind="leased"'
    assert 0 < before[f"entrypoint_lease_ttl_seconds{{{key}}}"] <= 6
    assert 0 < before["entrypoint_vault_token_ttl_seconds"] <= 3600
    assert total(before, "entrypoint_vault_request_duration_seconds_count") >= 2
    snap = status(sock)
    assert snap["auth"]["method"].startswith("token")
    [row] = snap["keys"]
    lease_ids = database.leases("database/creds/short")
    assert row["lease"] in {hashlib.sha256(i.encode()).hexdigest()[:12] for i in lease_ids}
    assert row["kind"] == "leased" and row["next"] in ("renew", "replace")
    ep.wait_log("rotation: restarting the app", timeout=30)
    wait_until(lambda: scrape(port).get("entrypoint_app_restarts_total", 0) >= 1,
               what="the restart counter")
    after = scrape(port)
    renewed = 'entrypoint_lease_renewals_total{kind="leased",outcome="ok"}'
    replaced = 'entrypoint_replacements_total{kind="leased",outcome="ok"}'
    assert after[renewed] >= 1 and after[replaced] >= 1
    assert after["entrypoint_last_refresh_timestamp_seconds"] > 0
    lease_class = [k for k in after
                   if k.startswith("entrypoint_vault_request_duration_seconds_count")
                   and 'endpoint="lease"' in k and 'status="200"' in k]
    assert lease_class and after[lease_class[0]] >= 1
    assert (total(after, "entrypoint_vault_request_duration_seconds_count")
            > total(before, "entrypoint_vault_request_duration_seconds_count"))
    snap = status(sock)
    assert snap["app"]["restarts"] >= 1 and snap["app"]["last_action"] == "restart"
    ep.wait_users(2)  # the new app is up (its SIGTERM handler in place) before the stop
    assert ep.stop() == 0, ep.log
    # The log's events carry their fields as JSON keys, with the short lease id only.
    logged = [json.loads(line) for line in ep.log.splitlines() if line.startswith("{")]
    renewals = [e for e in logged if e.get("event") == "lease_renew" and e["outcome"] == "ok"]
    assert renewals and all(len(e["lease"]) == 12 and e["ttl"] > 0 for e in renewals)
    assert all(e["key"] == "vault:database/creds/short" for e in renewals)
    everything = ep.log + json.dumps(snap)
    for lease_id in lease_ids:
        assert lease_id not in everything  # a lease id is never shown, only its hash
    ep.assert_no_secret_logged()


def test_scrapes_and_status_cost_no_request_to_vault(
        database: Any, postgres: Any, tmp_path: Path, procs: list[Running]) -> None:
    # Long leases and no lease checks: nothing of the entrypoint's own schedule is due
    # while it is scraped, so any request in between would be the scrape's.
    database.add_database_role("long", default_ttl=3600, max_ttl=7200)
    ep, port, sock = launch(database, postgres, tmp_path, procs, "long",
                            "--lease-check-interval", "0", "--poll-interval", "1h")
    scrape(port)  # the metrics answer (the app is up)
    audited = len(database.requests)
    assert audited > 0  # the audit log sees the entrypoint's own requests
    counted = total(scrape(port), "entrypoint_vault_request_duration_seconds_count")
    for _ in range(20):
        scrape(port)
    for _ in range(3):
        status(sock)
    # Vault writes its audit entry before it answers: a request made by a scrape would
    # be in the log by the time that scrape returned.
    assert len(database.requests) == audited
    assert total(scrape(port), "entrypoint_vault_request_duration_seconds_count") == counted
    assert ep.stop() == 0, ep.log
