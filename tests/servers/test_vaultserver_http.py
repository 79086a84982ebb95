"""Conformance of the Vault test server: wire format, sys/health, seal-status, mounts, ACL.

Driven by hvac as a real client would, and by plain requests where the bytes matter.
"""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest
import requests

from tests.vaultserver.server import VaultTestServer

ENVELOPE_KEYS = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth", "mount_type"}


def get(server: VaultTestServer, path: str, token: str | None = None,
        method: str = "GET", **kwargs: object) -> requests.Response:
    headers = {"X-Vault-Token": token} if token else {}
    return requests.request(method, f"{server.addr}/v1/{path}", headers=headers, timeout=10,
                            **kwargs)  # type: ignore[arg-type]


def test_envelope_headers_and_null_parts(vault_standin: VaultTestServer) -> None:
    vault_standin.write_kv("kv", "app", {"a": "1"})
    response = get(vault_standin, "kv/app", vault_standin.root_token)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["wrap_info"] is None and body["warnings"] is None and body["auth"] is None
    assert body["mount_type"] == "kv"


def test_errors_missing_route_and_bad_json(vault_standin: VaultTestServer) -> None:
    root = vault_standin.root_token
    missing = get(vault_standin, "nowhere/x", root)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json() == {
        "errors": ['no handler for route "nowhere/x". route entry not found.']}
    bad = get(vault_standin, "kv/x", root, "POST", data=b"{not json")
    assert (bad.status_code, bad.json()) == (400, {"errors": ["error parsing JSON"]})
    absent = get(vault_standin, "kv/absent", root)
    assert (absent.status_code, absent.json()) == (404, {"errors": []})


def test_put_and_post_are_one_and_json_wins_over_form_type(vault_standin: VaultTestServer) -> None:
    root = vault_standin.root_token
    put = get(vault_standin, "kv/one", root, "PUT", json={"k": "v"})
    assert (put.status_code, put.content) == (204, b"")
    form_typed = requests.post(f"{vault_standin.addr}/v1/kv/two", data=b'{"k": "w"}', timeout=10,
                               headers={"X-Vault-Token": root,
                                        "Content-Type": "application/x-www-form-urlencoded"})
    assert form_typed.status_code == 204
    client = hvac.Client(url=vault_standin.addr, token=root)
    assert client.secrets.kv.v1.read_secret("one", mount_point="kv")["data"] == {"k": "v"}
    assert client.secrets.kv.v1.read_secret("two", mount_point="kv")["data"] == {"k": "w"}


def test_namespace_header_is_echoed(vault_standin: VaultTestServer) -> None:
    response = requests.get(f"{vault_standin.addr}/v1/sys/health", timeout=10,
                            headers={"X-Vault-Namespace": "team-a"})
    assert response.headers["X-Vault-Namespace"] == "team-a"


def test_health_codes_and_parameters(vault_standin: VaultTestServer) -> None:
    client = hvac.Client(url=vault_standin.addr)
    healthy = client.sys.read_health_status(method="GET")
    assert healthy["initialized"] is True and healthy["sealed"] is False
    assert {"cluster_name", "cluster_id", "server_time_utc", "version"} <= set(healthy)
    head = requests.head(f"{vault_standin.addr}/v1/sys/health", timeout=10)
    assert (head.status_code, head.content) == (200, b"")
    custom = get(vault_standin, "sys/health?activecode=299")
    assert custom.status_code == 299 and custom.json()["sealed"] is False
    assert get(vault_standin, "sys/health?activecode=abc").json() == {"errors": []}
    assert get(vault_standin, "sys/health?standbyok=maybe").status_code == 400
    assert get(vault_standin, "sys/health", method="POST").status_code == 405
    vault_standin.seal()
    sealed = get(vault_standin, "sys/health")
    assert sealed.status_code == 503
    assert sealed.json()["sealed"] is True and "cluster_id" not in sealed.json()
    assert get(vault_standin, "sys/health?sealedcode=200").status_code == 200
    assert get(vault_standin, "sys/health?uninitcode=299").status_code == 503


@pytest.mark.parametrize(
    ("mode", "default", "override", "code"),
    [
        ({"standby": True}, 429, "standbycode=299", 299),
        ({"standby": True}, 429, "standbyok=true", 200),
        ({"performance_standby": True}, 473, "performancestandbycode=298", 298),
        ({"performance_standby": True}, 473, "perfstandbyok=true", 200),
        ({"dr_secondary": True}, 472, "drsecondarycode=297", 297),
        ({"ha_unhealthy": True}, 474, "haunhealthycode=296", 296),
        ({"removed": True}, 530, "removedcode=295", 295),
        ({"initialized": False}, 501, "uninitcode=294", 294),
        ({"initialized": False, "standby": True}, 501, "standbyok=true", 501),
    ],
)
def test_health_modes_and_their_code_parameters(
    vault_standin: VaultTestServer, mode: dict[str, bool], default: int, override: str, code: int
) -> None:
    vault_standin.set_health(**mode)
    plain = get(vault_standin, "sys/health")
    assert plain.status_code == default
    assert plain.json()["initialized"] is mode.get("initialized", True)
    assert get(vault_standin, f"sys/health?{override}").status_code == code
    hvac_answer = hvac.Client(url=vault_standin.addr).sys.read_health_status(method="HEAD")
    assert hvac_answer.status_code == default


def test_seal_status_and_sealed_requests(vault_standin: VaultTestServer) -> None:
    client = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
    status = client.sys.read_seal_status()
    assert status["sealed"] is False and status["type"] == "shamir" and "cluster_id" in status
    vault_standin.seal()
    assert client.sys.is_sealed() is True
    sealed = get(vault_standin, "secret/data/x", vault_standin.root_token)
    assert (sealed.status_code, sealed.json()) == (503, {"errors": ["Vault is sealed"]})
    with pytest.raises(hvac.exceptions.VaultDown):
        client.secrets.kv.v2.read_secret_version("x", raise_on_deleted_version=True)
    vault_standin.unseal()
    assert client.sys.is_sealed() is False


def test_mounts_listing_and_enable(vault_standin: VaultTestServer) -> None:
    client = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
    client.sys.enable_secrets_engine("kv", path="team", options={"version": "2"})
    mounts = client.sys.list_mounted_secrets_engines()
    assert mounts["data"]["secret/"]["options"] == {"version": "2"}
    assert mounts["data"]["kv/"]["options"] == {"version": "1"}
    assert mounts["secret/"] == mounts["data"]["secret/"], "mounts are injected at the top too"
    assert client.sys.retrieve_mount_option("team", "version") == "2"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="path is already in use"):
        client.sys.enable_secrets_engine("kv", path="team")
    client.sys.enable_auth_method("approle")
    assert "approle/" in client.sys.list_auth_methods()["data"]


def test_ui_mounts_preflight(vault_standin: VaultTestServer) -> None:
    root = vault_standin.root_token
    info = get(vault_standin, "sys/internal/ui/mounts/secret/my/app", root).json()["data"]
    assert (info["path"], info["type"], info["options"]) == ("secret/", "kv", {"version": "2"})
    v1 = get(vault_standin, "sys/internal/ui/mounts/kv/app", root).json()["data"]
    assert v1["options"] == {"version": "1"}
    vault_standin.set_policy("app", {"secret/data/app/*": ["read"]})
    token = vault_standin.create_token(["app"], ttl=60)
    assert get(vault_standin, "sys/internal/ui/mounts/secret/app/db", token).status_code == 200
    denied = get(vault_standin, "sys/internal/ui/mounts/kv/app", token)
    assert denied.status_code == 403
    assert denied.json() == {"errors": [
        "preflight capability check returned 403, please ensure client's policies grant "
        'access to path "kv/app/"']}
    nowhere = get(vault_standin, "sys/internal/ui/mounts/nowhere/x", root)
    assert nowhere.status_code == 403


def test_acl_globs_and_hcl_policy(vault_standin: VaultTestServer) -> None:
    root = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
    root.sys.create_or_update_acl_policy(
        "reader", 'path "secret/data/app/*" {\n  capabilities = ["read"]\n}\n'
                  'path "kv/+/db" { capabilities = ["read", "list"] }\n')
    root.secrets.kv.v2.create_or_update_secret("app/db", secret={"p": "1"})
    root.secrets.kv.v2.create_or_update_secret("other/db", secret={"p": "2"})
    vault_standin.write_kv("kv", "team/db", {"p": "3"})
    token = vault_standin.create_token(["reader"], ttl=60)
    client = hvac.Client(url=vault_standin.addr, token=token)
    read = client.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"p": "1"}
    assert client.secrets.kv.v1.read_secret("team/db", mount_point="kv")["data"] == {"p": "3"}
    denied = get(vault_standin, "secret/data/other/db", token)
    assert denied.status_code == 403
    assert denied.json() == {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
    with pytest.raises(hvac.exceptions.Forbidden, match="permission denied"):
        client.secrets.kv.v2.create_or_update_secret("app/db", secret={"p": "x"})
    policy = root.sys.read_acl_policy("reader")["data"]["policy"]
    assert 'path "kv/+/db"' in policy
