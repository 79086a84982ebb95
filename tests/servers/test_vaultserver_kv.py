"""Conformance of the Vault test server: KV v1 and v2 (reference section 5)."""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest
import requests

from tests.vaultserver.kv import INVALID_V2_PATH
from tests.vaultserver.server import VaultTestServer


@pytest.fixture
def client(vault_standin: VaultTestServer) -> hvac.Client:
    return hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)


def raw(server: VaultTestServer, path: str) -> requests.Response:
    return requests.get(f"{server.addr}/v1/{path}", timeout=10,
                        headers={"X-Vault-Token": server.root_token})


def test_kv1_read_carries_the_mount_lease_duration(
    vault_standin: VaultTestServer, client: hvac.Client
) -> None:
    client.secrets.kv.v1.create_or_update_secret("app/db", {"user": "u"}, mount_point="kv")
    read = client.secrets.kv.v1.read_secret("app/db", mount_point="kv")
    assert (read["data"], read["lease_id"], read["renewable"], read["lease_duration"]) == (
        {"user": "u"}, "", False, 2764800)
    vault_standin.write_kv("kv", "app/ttl", {"foo": "bar", "ttl": "1h"})
    assert client.secrets.kv.v1.read_secret("app/ttl", mount_point="kv")["lease_duration"] == 3600
    assert client.secrets.kv.v1.list_secrets("app", mount_point="kv")["data"]["keys"] == [
        "db", "ttl"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v1.read_secret("nope", mount_point="kv")
    assert client.read("kv/nope") is None


def test_kv2_versions_and_version_query(vault_standin: VaultTestServer,
                                        client: hvac.Client) -> None:
    vault_standin.write_kv("secret", "app/api", {"token": "one"})
    written = client.secrets.kv.v2.create_or_update_secret("app/api", secret={"token": "two"})
    assert written["data"]["version"] == 2 and written["data"]["deletion_time"] == ""
    latest = client.secrets.kv.v2.read_secret_version("app/api", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"token": "two"}
    meta = latest["data"]["metadata"]
    assert (meta["version"], meta["destroyed"], meta["custom_metadata"]) == (2, False, None)
    assert meta["created_time"].endswith("Z") and latest["lease_duration"] == 0
    first = client.secrets.kv.v2.read_secret_version("app/api", version=1,
                                                     raise_on_deleted_version=True)
    assert first["data"]["data"] == {"token": "one"}
    assert raw(vault_standin, "secret/data/app/api?version=9").json() == {"errors": []}
    assert raw(vault_standin, "secret/data/app/none").status_code == 404


def test_kv2_metadata_and_list(vault_standin: VaultTestServer, client: hvac.Client) -> None:
    for value in ("a", "b", "c"):
        vault_standin.write_kv("secret", "app/db", {"v": value})
    vault_standin.write_kv("secret", "app/sub/x", {"v": "x"})
    meta = client.secrets.kv.v2.read_secret_metadata("app/db")["data"]
    assert meta["current_version"] == 3 and meta["oldest_version"] == 1
    assert set(meta["versions"]) == {"1", "2", "3"}
    assert meta["delete_version_after"] == "0s" and meta["cas_required"] is False
    assert client.secrets.kv.v2.list_secrets("app")["data"]["keys"] == ["db", "sub/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.list_secrets("empty")


def test_kv2_soft_delete_undelete_destroy(vault_standin: VaultTestServer,
                                          client: hvac.Client) -> None:
    vault_standin.write_kv("secret", "app/db", {"v": "1"})
    vault_standin.write_kv("secret", "app/db", {"v": "2"})
    answer = client.secrets.kv.v2.delete_latest_version_of_secret("app/db")
    assert answer.status_code == 204
    deleted = raw(vault_standin, "secret/data/app/db")
    assert deleted.status_code == 404 and deleted.headers["Content-Type"] == "application/json"
    body = deleted.json()
    assert "errors" not in body and body["data"]["data"] is None
    assert body["data"]["metadata"]["deletion_time"].endswith("Z")
    # hvac's raise_on_deleted_version=False hands back that 404 body.
    kept = client.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=False)
    assert kept["data"]["metadata"]["version"] == 2
    client.secrets.kv.v2.undelete_secret_versions("app/db", versions=[2])
    assert client.secrets.kv.v2.read_secret("app/db", raise_on_deleted_version=True)[
        "data"]["data"] == {"v": "2"}
    client.secrets.kv.v2.destroy_secret_versions("app/db", versions=[2])
    destroyed = raw(vault_standin, "secret/data/app/db").json()
    assert destroyed["data"]["metadata"]["destroyed"] is True
    assert destroyed["data"]["metadata"]["deletion_time"] == ""
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret("app/db", raise_on_deleted_version=False)
    assert client.secrets.kv.v2.read_secret_metadata("app/db")["data"]["versions"]["2"][
        "destroyed"] is True


def test_kv2_v1_style_path_and_root(vault_standin: VaultTestServer) -> None:
    vault_standin.write_kv("secret", "app", {"v": "1"})
    wrong = raw(vault_standin, "secret/app")
    assert wrong.status_code == 404
    assert "errors" not in wrong.json() and wrong.json()["data"] is None
    assert wrong.json()["warnings"] == [INVALID_V2_PATH]
    root = raw(vault_standin, "secret/data/")
    assert root.status_code == 404 and root.json()["warnings"] == [
        "Non-listing operations on the root of a K/V v2 mount are not supported."]


def test_kv2_check_and_set(client: hvac.Client) -> None:
    client.secrets.kv.v2.create_or_update_secret("cas", secret={"v": "1"}, cas=0)
    with pytest.raises(hvac.exceptions.InvalidRequest,
                       match="check-and-set parameter did not match the current version"):
        client.secrets.kv.v2.create_or_update_secret("cas", secret={"v": "2"}, cas=0)
    client.secrets.kv.v2.create_or_update_secret("cas", secret={"v": "2"}, cas=1)
    client.secrets.kv.v2.configure(cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        client.secrets.kv.v2.create_or_update_secret("cas", secret={"v": "3"})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="error parsing check-and-set"):
        client.write_data("secret/data/cas", data={"options": {"cas": "x"}, "data": {"v": 1}})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="no data provided"):
        client.write_data("secret/data/cas", data={"options": {}})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # hvac's own read inside patch()
def test_kv2_patch_merges_into_a_new_version(vault_standin: VaultTestServer,
                                             client: hvac.Client) -> None:
    vault_standin.write_kv("secret", "app/api", {"token": "one", "endpoint": "e"})
    patched = client.secrets.kv.v2.patch("app/api", {"token": "two"})
    assert patched["data"]["version"] == 2
    read = client.secrets.kv.v2.read_secret("app/api", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"token": "two", "endpoint": "e"}
    plain = requests.patch(f"{vault_standin.addr}/v1/secret/data/app/api", json={"data": {}},
                           headers={"X-Vault-Token": vault_standin.root_token}, timeout=10)
    assert plain.status_code == 415, "PATCH needs application/merge-patch+json"


def test_kv2_metadata_update_and_full_delete(vault_standin: VaultTestServer,
                                             client: hvac.Client) -> None:
    for value in ("1", "2", "3"):
        vault_standin.write_kv("secret", "app/cfg", {"v": value})
    client.secrets.kv.v2.update_metadata("app/cfg", max_versions=2,
                                         custom_metadata={"owner": "jdoe"})
    vault_standin.write_kv("secret", "app/cfg", {"v": "4"})
    meta = client.secrets.kv.v2.read_secret_metadata("app/cfg")["data"]
    assert meta["custom_metadata"] == {"owner": "jdoe"} and meta["max_versions"] == 2
    assert sorted(meta["versions"]) == ["3", "4"] and meta["oldest_version"] == 3
    read = client.secrets.kv.v2.read_secret("app/cfg", raise_on_deleted_version=True)
    assert read["data"]["metadata"]["custom_metadata"] == {"owner": "jdoe"}
    client.secrets.kv.v2.delete_metadata_and_all_versions("app/cfg")
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata("app/cfg")
