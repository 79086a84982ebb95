"""Conformance of the Vault test server: tokens (reference section 2) and bad-token answers."""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest
import requests

from tests.services.ports import wait_until
from tests.vaultserver.server import VaultTestServer

INVALID_TOKEN = {"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}


def client_for(server: VaultTestServer, token: str | None) -> hvac.Client:
    return hvac.Client(url=server.addr, token=token)


def raw(server: VaultTestServer, path: str, token: str | None, method: str = "GET"
        ) -> requests.Response:
    headers = {"X-Vault-Token": token} if token else {}
    return requests.request(method, f"{server.addr}/v1/{path}", headers=headers, timeout=10)


def test_lookup_self_fields(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["app"], ttl=120)
    data = client_for(vault_standin, token).auth.token.lookup_self()["data"]
    assert data["id"] == token
    assert data["policies"] == ["app", "default"]
    assert data["path"] == "auth/token/create" and data["type"] == "service"
    assert data["creation_ttl"] == 120 and 118 <= data["ttl"] <= 120
    assert data["renewable"] is True and data["orphan"] is False
    assert len(data["accessor"]) == 24 and data["accessor"].isalnum()
    assert data["expire_time"].endswith("Z") and isinstance(data["creation_time"], int)
    root = client_for(vault_standin, vault_standin.root_token).auth.token.lookup_self()["data"]
    assert (root["expire_time"], root["ttl"], root["policies"]) == (None, 0, ["root"])


def test_bad_missing_and_expired_tokens_are_403(vault_standin: VaultTestServer) -> None:
    bad = raw(vault_standin, "auth/token/lookup-self", "hvs.nope")
    assert (bad.status_code, bad.json()) == (403, INVALID_TOKEN)
    bearer = requests.get(f"{vault_standin.addr}/v1/auth/token/lookup-self", timeout=10,
                          headers={"Authorization": f"Bearer {vault_standin.root_token}"})
    assert bearer.status_code == 200
    none = raw(vault_standin, "auth/token/lookup-self", None)
    assert none.status_code == 403 and "permission denied" in none.json()["errors"][0]
    short = vault_standin.create_token(["default"], ttl=1)
    client = client_for(vault_standin, short)
    assert client.is_authenticated()
    wait_until(lambda: not client.is_authenticated(), 5, "the 1s token to expire")
    assert raw(vault_standin, "auth/token/lookup-self", short).json() == INVALID_TOKEN


def test_renew_self_is_capped_at_max_ttl_with_the_warning(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["default"], ttl=30, max_ttl=90)
    renewed = client_for(vault_standin, token).auth.token.renew_self(increment="1h")
    auth = renewed["auth"]
    assert auth["client_token"] == token and auth["renewable"] is True
    assert 88 <= auth["lease_duration"] <= 89
    assert renewed["warnings"] == [
        f'TTL of "1h" exceeded the effective max_ttl of "1m{auth["lease_duration"] - 60}s"; '
        "TTL value is capped accordingly"]
    uncapped = client_for(vault_standin, token).auth.token.renew_self(increment=10)
    assert uncapped["auth"]["lease_duration"] == 10 and uncapped["warnings"] is None
    data = client_for(vault_standin, token).auth.token.lookup_self()["data"]
    assert "last_renewal" in data and data["ttl"] <= 10


def test_renew_errors(vault_standin: VaultTestServer) -> None:
    fixed = vault_standin.create_token(["default"], ttl=60, renewable=False)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="lease is not renewable"):
        client_for(vault_standin, fixed).auth.token.renew_self()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid lease ID"):
        client_for(vault_standin, vault_standin.root_token).auth.token.renew_self()


def test_create_with_missing_policies_warns_and_children_die_with_parent(
    vault_standin: VaultTestServer,
) -> None:
    root = client_for(vault_standin, vault_standin.root_token)
    parent = root.auth.token.create(policies=["web", "stage"], ttl="1h")
    assert parent["auth"]["policies"] == ["default", "stage", "web"]
    assert parent["warnings"] == ['Policy "stage" does not exist', 'Policy "web" does not exist']
    assert parent["auth"]["lease_duration"] == 3600 and parent["auth"]["orphan"] is False
    parent_token = parent["auth"]["client_token"]
    assert parent_token.startswith("hvs.")
    with pytest.raises(hvac.exceptions.Forbidden):  # the default policy does not allow it
        client_for(vault_standin, parent_token).auth.token.create(policies=["web"], ttl=60)
    vault_standin.set_policy("web", {"auth/token/create": ["update"]})
    child = client_for(vault_standin, parent_token).auth.token.create(policies=["web"], ttl=60)
    child_token = child["auth"]["client_token"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="subset of parent"):
        client_for(vault_standin, parent_token).auth.token.create(policies=["admin"])
    answer = client_for(vault_standin, parent_token).auth.token.revoke_self()
    assert isinstance(answer, requests.Response) and answer.status_code == 204
    assert not client_for(vault_standin, child_token).is_authenticated()


def test_periodic_token_renews_to_its_period(vault_standin: VaultTestServer) -> None:
    token = vault_standin.create_token(["default"], ttl=0, period=120)
    renewed = client_for(vault_standin, token).auth.token.renew_self(increment=5)
    assert renewed["auth"]["lease_duration"] == 120
    assert client_for(vault_standin, token).auth.token.lookup_self()["data"]["period"] == 120


def test_revoke_token_behind_the_clients_back_and_log_accessor(
    vault_standin: VaultTestServer,
) -> None:
    token = vault_standin.create_token(["default"], ttl=60)
    client = client_for(vault_standin, token)
    assert client.is_authenticated()
    accessor = vault_standin.token_accessor(token)
    assert vault_standin.requests[-1].accessor == accessor
    vault_standin.revoke_token(accessor=accessor)
    assert not client.is_authenticated()
    last = vault_standin.requests[-1]
    assert (last.method, last.path, last.status, last.accessor) == (
        "GET", "auth/token/lookup-self", 403, None)
    assert vault_standin.count("auth/token/lookup-self", "GET") == 2
    other = vault_standin.create_token(["default"], ttl=60)
    vault_standin.expire_token(other)
    assert not client_for(vault_standin, other).is_authenticated()


def test_capabilities_self(vault_standin: VaultTestServer) -> None:
    vault_standin.set_policy("app", {"secret/data/app/*": ["read", "list"]})
    token = vault_standin.create_token(["app"], ttl=60)
    response = requests.post(f"{vault_standin.addr}/v1/sys/capabilities-self", timeout=10,
                             headers={"X-Vault-Token": token},
                             json={"paths": ["secret/data/app/db", "secret/data/other"]})
    data = response.json()["data"]
    assert data["secret/data/app/db"] == ["list", "read"]
    assert data["secret/data/other"] == ["deny"]


def test_use_limited_token_is_revoked_after_its_last_use(vault_standin: VaultTestServer) -> None:
    created = client_for(vault_standin, vault_standin.root_token).auth.token.create(
        policies=["default"], ttl=60, num_uses=2)
    token = created["auth"]["client_token"]
    assert client_for(vault_standin, token).auth.token.lookup_self()["data"]["num_uses"] == 1
    assert client_for(vault_standin, token).auth.token.lookup_self()["data"]["num_uses"] == 0
    assert raw(vault_standin, "auth/token/lookup-self", token).json() == INVALID_TOKEN


def test_response_wrapping_and_single_unwrap(vault_standin: VaultTestServer) -> None:
    vault_standin.enable_auth("approle")
    vault_standin.engine("approle", auth=True).add_role("web", ["default"])
    wrapped = requests.post(f"{vault_standin.addr}/v1/auth/approle/role/web/secret-id",
                            headers={"X-Vault-Token": vault_standin.root_token,
                                     "X-Vault-Wrap-TTL": "5m"}, timeout=10).json()
    info = wrapped["wrap_info"]
    assert wrapped["data"] is None and wrapped["auth"] is None
    assert info["ttl"] == 300 and info["creation_path"] == "auth/approle/role/web/secret-id"
    looked = requests.post(f"{vault_standin.addr}/v1/sys/wrapping/lookup", timeout=10,
                           json={"token": info["token"]}).json()
    assert looked["data"]["creation_ttl"] == 300
    unwrapped = client_for(vault_standin, info["token"]).sys.unwrap()
    assert len(unwrapped["data"]["secret_id"]) == 36
    again = requests.post(f"{vault_standin.addr}/v1/sys/wrapping/unwrap", timeout=10,
                          headers={"X-Vault-Token": info["token"]})
    assert again.json() == {"errors": ["wrapping token is not valid or does not exist"]}
    negative = requests.get(f"{vault_standin.addr}/v1/auth/token/lookup-self", timeout=10,
                            headers={"X-Vault-Token": vault_standin.root_token,
                                     "X-Vault-Wrap-TTL": "-1"})
    assert negative.status_code == 400


AUTH_KEYS = {"client_token", "accessor", "policies", "token_policies", "metadata",
             "lease_duration", "renewable", "entity_id", "token_type", "orphan",
             "mfa_requirement", "num_uses"}


def test_documented_shapes_of_auth_and_lookup(vault_standin: VaultTestServer) -> None:
    """HTTPAuth (reference 0.1/2.5) and the lookup-self sample's keys (2.1)."""
    root = client_for(vault_standin, vault_standin.root_token)
    created = root.auth.token.create(policies=["default"], ttl=60, meta={"user": "armon"})
    assert set(created["auth"]) == AUTH_KEYS
    assert created["auth"]["metadata"] == {"user": "armon"}
    token = created["auth"]["client_token"]
    assert set(client_for(vault_standin, token).auth.token.renew_self()["auth"]) == AUTH_KEYS
    data = client_for(vault_standin, token).auth.token.lookup_self()["data"]
    documented = {"accessor", "creation_time", "creation_ttl", "display_name", "entity_id",
                  "expire_time", "explicit_max_ttl", "id", "issue_time", "meta", "num_uses",
                  "orphan", "path", "policies", "renewable", "ttl"}
    assert documented <= set(data) and data["meta"] == {"user": "armon"}
