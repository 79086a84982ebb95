"""botocore finds the ECS stand-in's keys the way it would in a task, and moto accepts them."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.session
import pytest
from botocore.credentials import ContainerProvider
from botocore.exceptions import ClientError, CredentialRetrievalError
from botocore.utils import ContainerMetadataFetcher

from tests.services.ecs_credentials import (
    EcsCredentialsServer,
    iam_user_credentials,
    task_role_credentials,
)
from tests.services.moto_sts import MotoServer


@pytest.fixture
def bare_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS settings from the machine: no keys, no profile, no config files, no IMDS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def fast_provider(environ: dict[str, str]) -> ContainerProvider:
    # botocore's own provider and fetcher; only the 1 s pause between retries is dropped.
    return ContainerProvider(
        environ=environ, fetcher=ContainerMetadataFetcher(sleep=lambda _: None)
    )


def test_default_chain_takes_the_keys_from_the_full_uri(
    ecs_credentials: EcsCredentialsServer, moto_sts: MotoServer, bare_aws_env: pytest.MonkeyPatch
) -> None:
    bare_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs_credentials.url)
    credentials = botocore.session.Session().get_credentials()
    assert credentials is not None
    assert credentials.method == "container-role"
    frozen = credentials.get_frozen_credentials()
    expected = ecs_credentials.credentials
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        expected.access_key_id,
        expected.secret_access_key,
        expected.token,
    )
    identity = moto_sts.client(
        "sts", frozen.access_key, frozen.secret_key, session_token=frozen.token
    ).get_caller_identity()
    assert identity["Arn"] == ecs_credentials.arn
    assert ecs_credentials.arn.startswith("arn:aws:sts::123456789012:assumed-role/task-role-")
    assert [request.status for request in ecs_credentials.requests] == [200]


def test_task_role_keys_are_refused_without_their_session_token(
    ecs_credentials: EcsCredentialsServer, moto_sts: MotoServer
) -> None:
    issued = ecs_credentials.credentials
    sts = moto_sts.client("sts", issued.access_key_id, issued.secret_access_key)
    with pytest.raises(ClientError) as excinfo:
        sts.get_caller_identity()
    assert excinfo.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_an_iam_users_keys_can_be_served_instead(
    moto_sts: MotoServer, bare_aws_env: pytest.MonkeyPatch
) -> None:
    issued = iam_user_credentials(moto_sts)
    with EcsCredentialsServer(issued) as server:
        bare_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url)
        frozen = botocore.session.Session().get_credentials().get_frozen_credentials()
    assert frozen.access_key == issued.access_key_id and not frozen.token
    sts = moto_sts.client("sts", frozen.access_key, frozen.secret_key, session_token=frozen.token)
    assert sts.get_caller_identity()["Arn"] == issued.arn == server.arn
    assert issued.arn.startswith("arn:aws:iam::123456789012:user/")


def test_the_authorization_token_is_required_when_set(
    moto_sts: MotoServer, bare_aws_env: pytest.MonkeyPatch
) -> None:
    with EcsCredentialsServer(task_role_credentials(moto_sts), auth_token="tok-123") as server:
        bare_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url)
        bare_aws_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok-123")
        credentials = botocore.session.Session().get_credentials()
        assert credentials is not None
        assert credentials.get_frozen_credentials().access_key == server.credentials.access_key_id

        wrong = {**server.env(), "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok-456"}
        with pytest.raises(CredentialRetrievalError, match="401"):
            fast_provider(wrong).load()
        missing = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url}
        with pytest.raises(CredentialRetrievalError, match="401"):
            fast_provider(missing).load()
        assert [r.authorization for r in server.requests][:2] == ["tok-123", "tok-456"]
        assert [r.status for r in server.requests][1:] == [401] * 6


def test_the_document_has_the_agents_shape(ecs_credentials: EcsCredentialsServer) -> None:
    with urllib.request.urlopen(ecs_credentials.url, timeout=5) as response:
        document = json.load(response)
    assert set(document) == {"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert document["RoleArn"] == ecs_credentials.role_arn
    assert document["AccessKeyId"].startswith("ASIA") and document["Token"]
    expiration = datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert expiration.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=50)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(ecs_credentials.url + "x", timeout=5)
    assert excinfo.value.code == 404


def test_injected_failures_then_recovery(ecs_credentials: EcsCredentialsServer) -> None:
    ecs_credentials.fail_next(2, status=503)
    with pytest.raises(CredentialRetrievalError, match="503"):
        # botocore tries three times: two failures and then success would hide the faults,
        # so ask for two attempts' worth through a provider that gives up after them.
        provider = fast_provider(ecs_credentials.env())
        provider._fetcher.RETRY_ATTEMPTS = 2
        provider.load()
    credentials = fast_provider(ecs_credentials.env()).load()
    assert credentials.access_key == ecs_credentials.credentials.access_key_id
    assert [r.status for r in ecs_credentials.requests] == [503, 503, 200]


def test_rotated_credentials_are_served_from_then_on(
    ecs_credentials: EcsCredentialsServer, moto_sts: MotoServer
) -> None:
    first = fast_provider(ecs_credentials.env()).load()
    rotated = task_role_credentials(moto_sts)
    ecs_credentials.set_credentials(rotated)
    second = fast_provider(ecs_credentials.env()).load()
    assert first.access_key != second.access_key == rotated.access_key_id
    assert ecs_credentials.arn == rotated.arn
