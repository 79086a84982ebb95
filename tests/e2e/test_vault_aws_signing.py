"""aws-iam without Vault: credentials from the real botocore chain (ECS endpoint), signed
by botocore, replayed to moto's STS the way Vault replays them (reference §3.1 step 7).

The end-to-end logins through the Vault test server are in test_vault_aws_login.py.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from entrypoint.errors import AuthError
from entrypoint.sources.vault.auth import aws_iam


def replay(moto_url: str, headers: dict[str, str], url: str) -> requests.Response:
    """What Vault does with the login fields: same method, body and headers (Host too)."""
    path = url.split("://", 1)[1].split("/", 1)[1] if "/" in url.split("://", 1)[1] else ""
    return requests.post(moto_url.rstrip("/") + "/" + path, data=aws_iam.BODY, headers=headers,
                         timeout=10)


@pytest.mark.parametrize(("region", "endpoint", "expected"), [
    (None, None, ("https://sts.amazonaws.com/", "us-east-1")),
    ("us-east-1", None, ("https://sts.amazonaws.com/", "us-east-1")),
    ("eu-west-1", None, ("https://sts.eu-west-1.amazonaws.com/", "eu-west-1")),
    (None, "https://sts.ap-south-1.amazonaws.com", ("https://sts.ap-south-1.amazonaws.com/",
                                                    "ap-south-1")),
    ("eu-central-1", "https://vpce-1.sts.example/", ("https://vpce-1.sts.example/",
                                                     "eu-central-1")),
    (None, "sts.eu-west-2.amazonaws.com", ("https://sts.eu-west-2.amazonaws.com/",
                                           "eu-west-2")),
])
def test_sts_target(region: str | None, endpoint: str | None,
                    expected: tuple[str, str]) -> None:
    assert aws_iam.sts_target(region, endpoint) == expected


def test_no_credentials_is_a_clear_auth_error(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthError) as info:
        aws_iam.aws_credentials()
    assert info.value.exit_code == 77
    assert "no AWS credentials found" in str(info.value)
    assert "AWS_CONTAINER_CREDENTIALS" in str(info.value)


def test_ecs_credentials_sign_a_request_sts_accepts(aws_env: pytest.MonkeyPatch,
                                                    ecs_credentials, moto_sts) -> None:
    for name, value in ecs_credentials.env().items():
        aws_env.setenv(name, value)
    credentials = aws_iam.aws_credentials()
    assert credentials.access_key == ecs_credentials.credentials.access_key_id
    url, region = aws_iam.sts_target(None, None)
    headers = aws_iam.signed_request(credentials, url, region, "vault.example.com")
    assert headers["Host"] == "sts.amazonaws.com"
    assert "x-vault-aws-iam-server-id" in headers["Authorization"].split("SignedHeaders=")[1]
    assert headers["X-Amz-Security-Token"] == ecs_credentials.credentials.token
    answer = replay(moto_sts.endpoint_url, headers, url)
    assert answer.status_code == 200, answer.text
    assert f"<Arn>{ecs_credentials.arn}</Arn>" in answer.text
    assert ecs_credentials.requests, "botocore fetched the keys from the ECS endpoint"

    # The four login fields carry exactly that request.
    payload = aws_iam.login_payload(headers, url, "app")
    assert payload["iam_http_request_method"] == "POST"
    assert base64.b64decode(payload["iam_request_url"]).decode() == url
    assert base64.b64decode(payload["iam_request_body"]).decode() == aws_iam.BODY
    sent = json.loads(base64.b64decode(payload["iam_request_headers"]))
    assert sent == {k: [v] for k, v in headers.items()}
    assert payload["role"] == "app"


def test_sts_refuses_a_changed_header_and_a_wrong_region(aws_env: pytest.MonkeyPatch,
                                                         ecs_credentials, moto_sts) -> None:
    for name, value in ecs_credentials.env().items():
        aws_env.setenv(name, value)
    credentials = aws_iam.aws_credentials()
    url, region = aws_iam.sts_target(None, None)
    headers = aws_iam.signed_request(credentials, url, region, "vault.example.com")
    tampered = dict(headers, **{aws_iam.SERVER_ID_HEADER: "other.example.com"})
    answer = replay(moto_sts.endpoint_url, tampered, url)
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text
    # Signed for eu-west-1 but sent to the global endpoint (hvac#251).
    wrong = aws_iam.signed_request(credentials, url, "eu-west-1", None)
    answer = replay(moto_sts.endpoint_url, wrong, url)
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text


def test_sts_error_bodies_are_shortened_and_credentials_hidden() -> None:
    class Creds:
        access_key = "ASIAEXAMPLEKEY"
        secret_key = "s3cr3t-key-value"
        token = "session-token-value"

    text = ("error making upstream request: received error code 403 from STS: "
            "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request "
            "signature we calculated does not match</Message></Error>"
            "<Canonical>x-amz-security-token:session-token-value</Canonical></ErrorResponse>")
    shown = aws_iam._hide(text, Creds())
    assert "session-token-value" not in shown and "s3cr3t" not in shown
    assert shown.endswith("SignatureDoesNotMatch: The request signature we calculated does "
                          "not match")


# -- the helper process that signs for the resident entrypoint ---------------------------

def test_the_helper_signs_what_sts_accepts(aws_env: pytest.MonkeyPatch, ecs_credentials,
                                           moto_sts) -> None:
    """The headers come from a child process (botocore is loaded there, not here)."""
    for name, value in ecs_credentials.env().items():
        aws_env.setenv(name, value)
    url, region = aws_iam.sts_target(None, None)
    headers = aws_iam.helper_sign(url, region, "vault.example.com")
    assert headers["Host"] == "sts.amazonaws.com"
    assert "x-vault-aws-iam-server-id" in headers["Authorization"].split("SignedHeaders=")[1]
    assert headers["X-Amz-Security-Token"] == ecs_credentials.credentials.token
    answer = replay(moto_sts.endpoint_url, headers, url)
    assert answer.status_code == 200, answer.text
    assert f"<Arn>{ecs_credentials.arn}</Arn>" in answer.text
    assert ecs_credentials.requests, "the helper fetched the keys from the ECS endpoint"
    shown = aws_iam._shown(headers)
    assert shown.access_key == ecs_credentials.credentials.access_key_id
    assert shown.token == ecs_credentials.credentials.token and shown.secret_key is None


def test_the_helper_without_credentials_says_what_the_chain_says(
        aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthError) as info:
        aws_iam.helper_sign(*aws_iam.sts_target(None, None), None)
    assert info.value.exit_code == 77
    assert info.value.message == "aws-iam: no AWS credentials found"
    assert "AWS_CONTAINER_CREDENTIALS" in (info.value.hint or "")
    with pytest.raises(AuthError) as here:  # word for word what botocore in-process said
        aws_iam.aws_credentials()
    assert str(info.value) == str(here.value)


def test_the_helper_gets_the_aws_chain_s_environment_only(
        aws_env: pytest.MonkeyPatch) -> None:
    env = aws_iam.helper_env({"AWS_ROLE_ARN": "r", "HOME": "/h", "PATH": "/bin",
                              "HTTPS_PROXY": "p", "VAULT_TOKEN": "t", "VAULT_ADDR": "a",
                              "ENTRYPOINT_VAULT_ROLE": "x", "DB_PASSWORD": "vault:kv/db#pw"})
    assert env == {"AWS_ROLE_ARN": "r", "HOME": "/h", "PATH": "/bin", "HTTPS_PROXY": "p"}


def test_a_helper_that_dies_is_an_auth_error(aws_env: pytest.MonkeyPatch,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_iam.sys, "executable", "/bin/false")
    with pytest.raises(AuthError) as info:
        aws_iam.helper_sign(*aws_iam.sts_target(None, None), None)
    assert info.value.exit_code == 77
    assert "the signing helper failed (exit status 1)" in str(info.value)
