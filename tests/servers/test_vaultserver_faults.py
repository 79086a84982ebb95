"""The Vault test server's own controls: faults, request log, restart, /_test/, running by hand.

Also the AppRole and Kubernetes login shapes (reference section 4).
"""

from __future__ import annotations

import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
import requests

from tests.services.ports import free_port, wait_until
from tests.vaultserver.server import VaultTestServer

REPO = Path(__file__).resolve().parents[2]


def root_client(server: VaultTestServer) -> hvac.Client:
    return hvac.Client(url=server.addr, token=server.root_token)


def test_fail_next_with_500_then_503_on_a_path(vault_standin: VaultTestServer) -> None:
    client = root_client(vault_standin)
    vault_standin.fail_next(1, 500)
    with pytest.raises(hvac.exceptions.InternalServerError, match="internal error"):
        client.auth.token.lookup_self()
    vault_standin.fail_next(2, 503, path_prefix="sys/leases/")
    assert client.auth.token.lookup_self()["data"]["id"] == vault_standin.root_token
    for _ in range(2):
        with pytest.raises(hvac.exceptions.VaultDown):
            client.sys.read_lease("x")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid lease"):
        client.sys.read_lease("x")
    statuses = [r.status for r in vault_standin.requests]
    assert statuses == [500, 200, 503, 503, 400]


def test_rate_limit_answers_429_with_retry_after(vault_standin: VaultTestServer) -> None:
    vault_standin.rate_limit_next(1, retry_after=2)
    exempt = requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=10)
    assert exempt.status_code == 200, "sys/health is exempt from rate limiting"
    response = requests.get(f"{vault_standin.addr}/v1/secret/data/x", timeout=10,
                            headers={"X-Vault-Token": vault_standin.root_token})
    assert response.status_code == 429
    assert response.json() == {
        "errors": ['request path "secret/data/x": rate limit quota exceeded']}
    retry_at = parsedate_to_datetime(response.headers["Retry-After"].replace("UTC", "GMT"))
    assert 0 < retry_at.timestamp() - time.time() <= 3
    vault_standin.rate_limit_next(1, retry_after=2, http_date=False)
    with pytest.raises(hvac.exceptions.RateLimitExceeded):
        root_client(vault_standin).auth.token.lookup_self()
    assert vault_standin.requests[-1].status == 429
    again = requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=10)
    assert again.status_code == 200


def test_delay_applies_to_the_next_requests_only(vault_standin: VaultTestServer) -> None:
    vault_standin.set_delay(0.4, count=1)
    started = time.monotonic()
    requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=10)
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=10)
    assert time.monotonic() - started < 0.4


def test_stop_and_start_on_the_same_port_keep_state(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["default"], ttl=60)
    vault_standin.write_kv("secret", "app", {"v": "1"})
    addr = vault_standin.addr
    session = requests.Session()
    assert session.get(f"{addr}/v1/sys/health", timeout=10).status_code == 200
    vault_standin.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{addr}/v1/sys/health", timeout=10)
    vault_standin.start()
    assert vault_standin.addr == addr
    assert hvac.Client(url=addr, token=token).is_authenticated()
    read = root_client(vault_standin).secrets.kv.v2.read_secret("app",
                                                               raise_on_deleted_version=True)
    assert read["data"]["data"] == {"v": "1"}


def test_request_log_entries(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["default"], ttl=60)
    before = time.time()
    hvac.Client(url=vault_standin.addr, token=token).auth.token.lookup_self()
    requests.get(f"{vault_standin.addr}/v1/sys/health?standbyok=true", timeout=10)
    lookup, health = vault_standin.requests
    assert (lookup.method, lookup.path, lookup.status) == ("GET", "auth/token/lookup-self", 200)
    assert lookup.accessor == vault_standin.token_accessor(token)
    assert before <= lookup.timestamp <= health.timestamp <= time.time()
    assert (health.path, health.query, health.accessor) == ("sys/health", "standbyok=true", None)
    assert vault_standin.count("sys/health") == 1
    vault_standin.clear_requests()
    assert vault_standin.requests == []


def test_control_paths_drive_the_server(vault_standin: VaultTestServer) -> None:
    control = f"{vault_standin.addr}/_test"
    made = requests.post(f"{control}/token", json={"policies": ["default"], "ttl": 60},
                         timeout=10).json()
    client = hvac.Client(url=vault_standin.addr, token=made["token"])
    assert client.is_authenticated()
    requests.post(f"{control}/fail", json={"count": 1, "status": 503}, timeout=10)
    with pytest.raises(hvac.exceptions.VaultDown):
        client.auth.token.lookup_self()
    requests.post(f"{control}/seal", timeout=10)
    assert client.sys.is_sealed()
    requests.post(f"{control}/unseal", timeout=10)
    requests.post(f"{control}/revoke-token", json={"accessor": made["accessor"]}, timeout=10)
    assert not client.is_authenticated()
    logged = requests.get(f"{control}/requests", timeout=10).json()["requests"]
    assert [r["status"] for r in logged] == [200, 503, 200, 403]
    assert all(not r["path"].startswith("_test") for r in logged)
    assert requests.post(f"{control}/revoke-lease", json={"lease_id": "x/y"},
                         timeout=10).json() == {"revoked": False}
    assert requests.post(f"{control}/nothing", timeout=10).status_code == 404


def test_control_restart_comes_back_on_the_same_port(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["default"], ttl=60)
    answer = requests.post(f"{vault_standin.addr}/_test/restart", json={"down_seconds": 0.3},
                           timeout=10)
    assert answer.status_code == 200

    def down() -> bool:
        try:
            requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=1)
        except requests.ConnectionError:
            return True
        return False

    wait_until(down, 5, "the server to go down")
    wait_until(lambda: not down(), 5, "the server to come back")
    assert hvac.Client(url=vault_standin.addr, token=token).is_authenticated()


def test_runnable_by_hand() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.vaultserver", "--port", str(port), "--root-token", "t0k"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = process.stdout.readline().decode() if process.stdout else ""
        assert f"http://127.0.0.1:{port}" in line
        client = hvac.Client(url=f"http://127.0.0.1:{port}", token="t0k")
        assert client.auth.token.lookup_self()["data"]["policies"] == ["root"]
    finally:
        process.terminate()
        process.wait(10)


def test_approle_login(vault_standin: VaultTestServer) -> None:
    root = root_client(vault_standin)
    root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle("web", token_policies=["app"], token_ttl="20m")
    role_id = root.auth.approle.read_role_id("web")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("web")["data"]["secret_id"]
    client = hvac.Client(url=vault_standin.addr)
    answer = client.auth.approle.login(role_id, secret_id)
    auth = answer["auth"]
    assert auth["metadata"] == {"role_name": "web"} and auth["lease_duration"] == 1200
    assert auth["policies"] == ["app", "default"] and auth["orphan"] is True
    assert answer["data"] is None and answer["lease_id"] == ""
    for bad_secret, message in (("wrong", "invalid role or secret ID"),
                                (None, "missing secret_id")):
        with pytest.raises(hvac.exceptions.InvalidRequest, match=message):
            client.auth.approle.login(role_id, bad_secret)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        client.auth.approle.login("unknown", secret_id)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="missing role_id"):
        client.auth.approle.login("", secret_id)


def test_kubernetes_login(vault_standin: VaultTestServer) -> None:
    vault_standin.enable_auth("kubernetes")
    engine = vault_standin.engine("kubernetes", auth=True)
    engine.add_jwt("eyJ.sa.jwt", "vault-auth", "apps")
    engine.add_role("web", ["vault-auth"], ["apps"], ["app"], ttl=600)
    client = hvac.Client(url=vault_standin.addr)
    auth = client.auth.kubernetes.login("web", "eyJ.sa.jwt")["auth"]
    assert auth["metadata"]["service_account_name"] == "vault-auth"
    assert auth["metadata"]["service_account_namespace"] == "apps"
    assert auth["lease_duration"] == 600 and auth["policies"] == ["app", "default"]
    with pytest.raises(hvac.exceptions.Forbidden, match="permission denied"):
        client.auth.kubernetes.login("web", "not-a-known-jwt")
