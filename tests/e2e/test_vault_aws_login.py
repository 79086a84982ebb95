"""aws-iam end to end: botocore's chain reads keys from an ECS container-credentials
endpoint on loopback, botocore signs GetCallerIdentity, the real Vault replays it
to moto's STS (signature checked), and binds the answer to a Vault role."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import AuthError
from entrypoint.sources.vault.source import VaultSource
from tests.services.ecs_credentials import EcsCredentialsServer, iam_user_credentials

HEADER = "vault.example.com"


@pytest.fixture
def user_endpoint(moto_sts: Any, aws_env: pytest.MonkeyPatch) -> Iterator[EcsCredentialsServer]:
    """The ECS endpoint handing out an IAM user's keys, and the env pointing at it."""
    with EcsCredentialsServer(iam_user_credentials(moto_sts)) as server:
        for name, value in server.env().items():
            aws_env.setenv(name, value)
        yield server


@pytest.fixture
def aws_vault(vault_server: Any, moto_sts: Any) -> Any:
    vault_server.configure_aws(moto_sts, header_value=HEADER)
    vault_server.set_policy("app", {"secret/data/app/*": ["read"]})
    vault_server.write_kv("secret", "app/db", {"password": "aws-login-secret-1"})
    return vault_server


def source(server: Any, **settings: Any) -> VaultSource:
    settings.setdefault("vault_aws_header", HEADER)
    settings.setdefault("startup_timeout", 3.0)
    return VaultSource.from_config(Config(vault_auth="aws-iam", **settings),
                                   {"VAULT_ADDR": server.addr})


def test_bound_iam_user_logs_in(aws_vault: Any, user_endpoint: EcsCredentialsServer,
                                caplog: pytest.LogCaptureFixture) -> None:
    aws_vault.add_aws_role("app", user_endpoint.arn, ["app"], ttl=600)
    src = source(aws_vault, vault_role="app")
    with caplog.at_level(logging.INFO):
        assert src.fetch("secret/app/db").plain() == {"password": "aws-login-secret-1"}
    assert src.keeper.current is not None and "app" in src.keeper.current.policies
    assert src.keeper.current.created and src.keeper.current.ttl == 600
    assert user_endpoint.requests and aws_vault.count("auth/aws/login") == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "aws-iam (auth/aws) role app" in text
    creds = user_endpoint.credentials
    for value in (creds.secret_access_key, src.client.token):
        assert value not in text
    token = src.client.token
    src.close()  # a token we logged in for is revoked on exit
    import hvac

    assert not hvac.Client(url=aws_vault.addr, token=token).is_authenticated()


def test_bound_task_role_logs_in(aws_vault: Any, ecs_credentials: Any,
                                 aws_env: pytest.MonkeyPatch) -> None:
    for name, value in ecs_credentials.env().items():
        aws_env.setenv(name, value)
    aws_vault.add_aws_role("task", ecs_credentials.role_arn, ["app"])
    src = source(aws_vault, vault_role="task")
    assert src.fetch("secret/app/db").plain() == {"password": "aws-login-secret-1"}
    src.close()


def test_custom_mount(vault_server: Any, moto_sts: Any,
                     user_endpoint: EcsCredentialsServer) -> None:
    vault_server.configure_aws(moto_sts, mount="aws-prod")
    # Real Vault refuses a role that would make root tokens ("auth methods cannot create
    # root tokens"); the stand-in allowed it.
    vault_server.set_policy("x-reader", {"secret/data/x": ["read"]})
    vault_server.add_aws_role("app", user_endpoint.arn, ["x-reader"], mount="aws-prod")
    vault_server.write_kv("secret", "x", {"k": "v"})
    src = source(vault_server, vault_role="app", vault_auth_mount="aws-prod",
                 vault_aws_header=None)
    assert src.fetch("secret/x").plain() == {"k": "v"}
    assert vault_server.count("auth/aws-prod/login") == 1
    src.close()


def refused(server: Any, **settings: Any) -> AuthError:
    src = source(server, **settings)
    try:
        with pytest.raises(AuthError) as info:
            src.fetch("secret/app/db")
    finally:
        src.close()
    assert info.value.exit_code == 77
    return info.value


def test_wrong_header_value(aws_vault: Any, user_endpoint: EcsCredentialsServer) -> None:
    aws_vault.add_aws_role("app", user_endpoint.arn, ["app"])
    error = refused(aws_vault, vault_role="app", vault_aws_header="evil.example.com")
    assert "X-Vault-AWS-IAM-Server-ID" in str(error)
    assert "ENTRYPOINT_VAULT_AWS_HEADER" in str(error)
    error = refused(aws_vault, vault_role="app", vault_aws_header=None)
    assert "X-Vault-AWS-IAM-Server-ID" in str(error)


def test_unbound_principal(aws_vault: Any, moto_sts: Any,
                           user_endpoint: EcsCredentialsServer) -> None:
    from tests.services.moto_sts import create_iam_user, unique_user_name

    other_arn = create_iam_user(moto_sts, unique_user_name("other"))[2]
    aws_vault.add_aws_role("app", other_arn, ["app"])
    error = refused(aws_vault, vault_role="app")
    assert "does not belong to the role" in str(error)
    assert "bound_iam_principal_arn" in str(error)


def test_bad_signature(aws_vault: Any, user_endpoint: EcsCredentialsServer) -> None:
    aws_vault.add_aws_role("app", user_endpoint.arn, ["app"])
    good = user_endpoint.credentials
    wrong = dataclasses.replace(good, secret_access_key="x" * 40)
    user_endpoint.set_credentials(wrong)
    error = refused(aws_vault, vault_role="app")
    assert "SignatureDoesNotMatch" in str(error)
    for value in ("x" * 40, good.secret_access_key):
        assert value not in str(error)


def test_wrong_region_for_the_endpoint(aws_vault: Any,
                                       user_endpoint: EcsCredentialsServer) -> None:
    aws_vault.add_aws_role("app", user_endpoint.arn, ["app"])
    error = refused(aws_vault, vault_role="app", vault_aws_region="eu-west-1",
                    vault_sts_endpoint="https://sts.amazonaws.com/")
    assert "SignatureDoesNotMatch" in str(error)
    assert "ENTRYPOINT_VAULT_AWS_REGION" in str(error)


def test_unknown_role(aws_vault: Any, user_endpoint: EcsCredentialsServer) -> None:
    error = refused(aws_vault, vault_role="nope")
    assert "nope" in str(error)


def test_the_binary_logs_in_with_aws_iam(aws_vault: Any, user_endpoint: EcsCredentialsServer,
                                         tmp_path: Path) -> None:
    """The headline: nothing baked in, the container's AWS identity is the way in."""
    from tests.helpers.cli import run_cli

    aws_vault.add_aws_role("app", user_endpoint.arn, ["app"], ttl=600)
    env = {"VAULT_ADDR": aws_vault.addr, "ENTRYPOINT_VAULT_ROLE": "app",
           "ENTRYPOINT_VAULT_AWS_HEADER": HEADER, "DB_PASSWORD": "vault:secret/app/db#password",
           "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", **user_endpoint.env()}
    result = run_cli(["--", "sh", "-c", 'test "$DB_PASSWORD" = aws-login-secret-1'], env)
    assert result.returncode == 0, result.stderr
    assert "aws-iam (auth/aws) role app" in result.stderr
    assert "revoked our token" in result.stderr
    assert aws_vault.count("auth/aws/login") == 1
    assert aws_vault.count("auth/token/revoke-self") == 1
    creds = user_endpoint.credentials
    assert creds.secret_access_key not in result.stderr
    assert "aws-login-secret-1" not in result.stderr
    env["ENTRYPOINT_VAULT_AWS_HEADER"] = "evil.example.com"
    refused = run_cli(["--", "true"], env)
    assert refused.returncode == 77
    assert "X-Vault-AWS-IAM-Server-ID" in refused.stderr and "Traceback" not in refused.stderr
