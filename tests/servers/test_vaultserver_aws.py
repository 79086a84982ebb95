"""Conformance of the Vault test server: AWS IAM login against moto's STS (reference section 3).

The signatures are real: moto (signature checking on) refuses what real STS would refuse,
and the server turns that into Vault's 400 `error making upstream request: ...`.
"""

from __future__ import annotations

import base64
import json
from base64 import b64encode
from collections.abc import Callable, Iterator
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests
from hvac import aws_utils

from tests.services.moto_sts import MotoServer, assume_new_role, create_iam_user, unique_user_name
from tests.vaultserver.server import VaultTestServer

HEADER = "vault.example.test"
User = tuple[str, str, str]


@pytest.fixture
def user(moto_sts: MotoServer) -> User:
    return create_iam_user(moto_sts, unique_user_name("vault"))


@pytest.fixture
def aws(vault_standin: VaultTestServer, moto_sts: MotoServer, user: User) -> Iterator[hvac.Client]:
    vault_standin.set_policy("app", {"secret/data/app/*": ["read"]})
    vault_standin.configure_aws(moto_sts, header_value=HEADER)
    vault_standin.add_aws_role("app", user[2], ["app"], ttl=300, max_ttl=600)
    yield hvac.Client(url=vault_standin.addr)


def login_error(call: Callable[[], Any]) -> str:
    with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
        call()
    errors = excinfo.value.errors
    assert isinstance(errors, list) and len(errors) == 1
    return str(errors[0])


def signed_payload(user: User, header: str | None = HEADER, unsigned_header: str | None = None,
                   body: str | None = None, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """What hvac's iam_login posts, with ways to spoil it after signing."""
    request = aws_utils.generate_sigv4_auth_request(header_value=header)
    if body is not None:
        request.prepare_body(body, None)
    aws_utils.SigV4Auth(user[0], user[1], None, "us-east-1").add_auth(request)
    headers = {k: [request.headers[k]] for k in request.headers}
    if unsigned_header is not None:
        headers["X-Vault-AWS-IAM-Server-ID"] = [unsigned_header]
    headers.update({k: [v] for k, v in (extra or {}).items()})
    return {
        "iam_http_request_method": "POST",
        "iam_request_url": b64encode(request.url.encode()).decode(),
        "iam_request_headers": b64encode(json.dumps(headers).encode()).decode(),
        "iam_request_body": b64encode(str(request.body).encode()).decode(),
        "role": "app",
    }


def post_login(server: VaultTestServer, payload: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.addr}/v1/auth/aws/login", json=payload, timeout=30)


def test_good_login_shape_and_token(aws: hvac.Client, user: User,
                                    vault_standin: VaultTestServer) -> None:
    answer = aws.auth.aws.iam_login(user[0], user[1], role="app", header_value=HEADER)
    assert (answer["lease_id"], answer["lease_duration"], answer["data"]) == ("", 0, None)
    auth = answer["auth"]
    assert auth["policies"] == ["app", "default"] and auth["token_policies"] == auth["policies"]
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (300, True, True)
    assert auth["metadata"]["auth_type"] == "iam"
    assert auth["metadata"]["account_id"] == "123456789012"
    assert auth["token_type"] == "service" and len(auth["accessor"]) == 24
    looked = aws.auth.token.lookup_self()["data"]  # hvac now uses the new token
    assert looked["path"] == "auth/aws/login"
    assert looked["display_name"] == "aws-" + user[2].rsplit("/", 1)[1]
    vault_standin.write_kv("secret", "app/db", {"p": "1"})
    assert aws.secrets.kv.v2.read_secret("app/db", raise_on_deleted_version=True)[
        "data"]["data"] == {"p": "1"}
    renewed = aws.auth.token.renew_self(increment=3600)
    assert renewed["warnings"] and 598 <= renewed["auth"]["lease_duration"] <= 600


def test_wrong_secret_key_is_refused_by_sts(aws: hvac.Client, user: User) -> None:
    message = login_error(lambda: aws.auth.aws.iam_login(user[0], user[1] + "x", role="app",
                                                         header_value=HEADER))
    assert message.startswith("error making upstream request: received error code 403 from STS: ")
    assert "<Code>SignatureDoesNotMatch</Code>" in message


def test_wrong_region_is_refused_by_sts(aws: hvac.Client, user: User) -> None:
    message = login_error(lambda: aws.auth.aws.iam_login(
        user[0], user[1], role="app", header_value=HEADER, region="eu-west-1"))
    assert message.startswith("error making upstream request: received error code 403 from STS: ")
    assert "Credential should be scoped to a valid region" in message


def test_server_id_header_checks(aws: hvac.Client, user: User,
                                 vault_standin: VaultTestServer) -> None:
    prefix = "error validating X-Vault-AWS-IAM-Server-ID header: "
    wrong = login_error(lambda: aws.auth.aws.iam_login(user[0], user[1], role="app",
                                                       header_value="other"))
    assert wrong == prefix + f'expected "{HEADER}" but got "other"'
    missing = login_error(lambda: aws.auth.aws.iam_login(user[0], user[1], role="app"))
    assert missing == prefix + 'missing header "X-Vault-AWS-IAM-Server-ID"'
    unsigned = post_login(vault_standin, signed_payload(user, header=None, unsigned_header=HEADER))
    assert (unsigned.status_code, unsigned.json()) == (
        400, {"errors": [prefix + "vault header wasn't signed"]})


def test_request_checks_before_sts(user: User, aws: hvac.Client,
                                   vault_standin: VaultTestServer) -> None:
    amz = post_login(vault_standin, signed_payload(user, extra={"X-Amz-Foo": "bar"}))
    assert amz.json() == {"errors": ["invalid request header: X-Amz-Foo"]}
    body = post_login(vault_standin, signed_payload(
        user, body="Action=GetCallerIdentity&Version=2011-06-15&Extra=1"))
    assert body.json() == {"errors": ["iam request body is invalid"]}
    partial = post_login(vault_standin, {"iam_http_request_method": "POST"})
    assert partial.json() == {"errors": ["missing iam_request_url"]}
    nothing = post_login(vault_standin, {"role": "app"})
    assert nothing.json() == {"errors": ["didn't supply required authentication values"]}
    method = post_login(vault_standin, {**signed_payload(user), "iam_http_request_method": "PUT"})
    assert method.json() == {"errors": [
        "invalid iam_http_request_method; currently only 'GET' and 'POST' are supported"]}
    garbage = post_login(vault_standin, {**signed_payload(user), "iam_request_url": "%%%"})
    assert garbage.json() == {"errors": ["failed to base64 decode iam_request_url"]}

    def with_url(url: str, method: str = "POST") -> object:
        payload = {**signed_payload(user), "iam_http_request_method": method,
                   "iam_request_url": b64encode(url.encode()).decode()}
        return post_login(vault_standin, payload).json()

    sts = "https://sts.amazonaws.com/"
    assert with_url(sts + "?Action=GetCallerIdentity") == {"errors": ["invalid request"]}
    assert with_url(sts, "GET") == {"errors": ["no action found in request"]}
    assert with_url(sts + "?Action=GetUser", "GET") == {
        "errors": ["unexpected action parameter, GetUser"]}
    assert with_url(sts + "?Action=GetCallerIdentity&Action=GetCallerIdentity", "GET") == {
        "errors": ["found multiple actions"]}
    get_unsigned = with_url(sts + "?Action=GetCallerIdentity&Version=2011-06-15", "GET")
    assert get_unsigned == {"errors": [
        "error validating X-Vault-AWS-IAM-Server-ID header: vault header wasn't signed"]}
    get_amz = with_url(sts + "?Action=GetCallerIdentity&X-Amz-SignedHeaders=host;"
                       "x-vault-aws-iam-server-id&X-Amz-Foo=1", "GET")
    assert get_amz == {"errors": ["invalid request header: X-Amz-Foo"]}
    no_body = post_login(vault_standin, {**signed_payload(user), "iam_request_body": ""})
    assert no_body.json() == {
        "errors": ["missing iam_request_body which is required for POST requests"]}


def test_sts_region_from_client(vault_standin: VaultTestServer, moto_sts: MotoServer,
                                user: User) -> None:
    vault_standin.configure_aws(moto_sts, use_sts_region_from_client=True)
    vault_standin.add_aws_role("app", user[2], ["app"])
    client = hvac.Client(url=vault_standin.addr)
    assert client.auth.aws.iam_login(user[0], user[1], role="app")["auth"]["client_token"]
    payload = signed_payload(user, header=None)
    headers = json.loads(base64.b64decode(payload["iam_request_headers"]))
    del headers["Authorization"]
    payload["iam_request_headers"] = b64encode(json.dumps(headers).encode()).decode()
    assert post_login(vault_standin, payload).json() == {
        "errors": ["region missing from Authorization header"]}


def test_unbound_principal_and_missing_role(aws: hvac.Client, moto_sts: MotoServer,
                                           vault_standin: VaultTestServer) -> None:
    other = create_iam_user(moto_sts, unique_user_name("other"))
    unbound = login_error(lambda: aws.auth.aws.iam_login(other[0], other[1], role="app",
                                                         header_value=HEADER))
    assert unbound == f'IAM Principal "{other[2]}" does not belong to the role "app"'
    missing = login_error(lambda: aws.auth.aws.iam_login(other[0], other[1], role="nope",
                                                         header_value=HEADER))
    assert missing == "entry for role nope not found"
    vault_standin.add_aws_role("ec2only", [], [], auth_type="ec2", bound_ami_id="ami-1")
    ec2 = login_error(lambda: aws.auth.aws.iam_login(other[0], other[1], role="ec2only",
                                                     header_value=HEADER))
    assert ec2 == "auth method iam not allowed for role ec2only"


def test_wildcard_exact_arn_and_default_role_name(
    aws: hvac.Client, moto_sts: MotoServer, vault_standin: VaultTestServer
) -> None:
    other = create_iam_user(moto_sts, unique_user_name("wild"))
    vault_standin.add_aws_role("wild", "arn:aws:iam::123456789012:user/wild-*", ["app"])
    assert aws.auth.aws.iam_login(other[0], other[1], role="WILD", header_value=HEADER)["auth"]
    name = other[2].rsplit("/", 1)[1]
    vault_standin.add_aws_role(name, other[2], ["app"], resolve_aws_unique_ids=False)
    # No role in the body: the role is the caller's friendly name.
    answer = aws.auth.aws.iam_login(other[0], other[1], header_value=HEADER)
    assert answer["auth"]["policies"] == ["app", "default"]


def test_assumed_role_login(aws: hvac.Client, moto_sts: MotoServer,
                            vault_standin: VaultTestServer) -> None:
    role_name = unique_user_name("task")
    assumed = assume_new_role(moto_sts, role_name)
    vault_standin.add_aws_role("task", assumed["RoleArn"], ["app"])
    answer = aws.auth.aws.iam_login(assumed["AccessKeyId"], assumed["SecretAccessKey"],
                                    session_token=assumed["SessionToken"], role="task",
                                    header_value=HEADER)
    assert answer["auth"]["client_token"]
    assert aws.auth.token.lookup_self()["data"]["display_name"] == f"aws-{role_name}/task"


def test_role_and_config_endpoints(vault_standin: VaultTestServer, moto_sts: MotoServer) -> None:
    root = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
    root.sys.enable_auth_method("aws")
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.auth.aws.read_config()
    root.auth.aws.configure(access_key=moto_sts.admin_access_key_id,
                            secret_key=moto_sts.admin_secret_access_key,
                            sts_endpoint=moto_sts.endpoint_url, iam_endpoint=moto_sts.endpoint_url,
                            iam_server_id_header_value=HEADER)
    config = root.auth.aws.read_config()  # hvac returns the data part
    assert config["sts_endpoint"] == moto_sts.endpoint_url
    assert config["iam_server_id_header_value"] == HEADER and "secret_key" not in config
    with pytest.raises(hvac.exceptions.InvalidRequest, match="at least one bound parameter"):
        root.auth.aws.create_role("empty", auth_type="iam")
    with pytest.raises(hvac.exceptions.InvalidRequest,
                       match='unable to resolve ARN "arn:aws:iam::123456789012:user/ghost"'):
        root.auth.aws.create_role("ghost", auth_type="iam",
                                  bound_iam_principal_arn=["arn:aws:iam::123456789012:user/ghost"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match="ttl should be shorter than max"):
        root.auth.aws.create_role("t", bound_iam_principal_arn=["arn:aws:iam::1:user/*"],
                                  ttl=60, max_ttl=30)


def test_renew_rechecks_the_role(aws: hvac.Client, user: User,
                                 vault_standin: VaultTestServer) -> None:
    aws.auth.aws.iam_login(user[0], user[1], role="app", header_value=HEADER)
    root = hvac.Client(url=vault_standin.addr, token=vault_standin.root_token)
    root.auth.aws.delete_role("app")
    with pytest.raises(hvac.exceptions.InvalidRequest, match='role "app" no longer bound'):
        aws.auth.token.renew_self()
