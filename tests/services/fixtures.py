"""Fixtures for this area (see tests/conftest.py): real services the tests stand on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
