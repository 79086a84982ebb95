"""Fixtures for this area (see tests/conftest.py): real services the tests stand on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.ecs_credentials import EcsCredentialsServer, task_role_credentials
from tests.services.moto_sts import MotoServer
from tests.services.postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A started PostgreSQL cluster for the whole run; superuser credentials on the object."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def moto_sts() -> Iterator[MotoServer]:
    """A moto server (STS, IAM, ...) that checks SigV4 signatures; see create_iam_user()."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def ecs_credentials(moto_sts: MotoServer) -> Iterator[EcsCredentialsServer]:
    """An ECS credentials endpoint handing out a new moto task role's temporary credentials.

    Point AWS_CONTAINER_CREDENTIALS_FULL_URI at `.url` (or use `.env()`); `.arn` is the
    identity those keys prove to moto's STS (arn:aws:sts::123456789012:assumed-role/R/task)
    and `.role_arn` the role's IAM ARN. No Authorization token is required unless a test
    builds its own EcsCredentialsServer with one; for an IAM user's keys, build one with
    iam_user_credentials().
    """
    with EcsCredentialsServer(task_role_credentials(moto_sts)) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """An environment where the AWS chain finds nothing unless a test adds it (no keys,
    profile or instance metadata from the machine)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield monkeypatch
