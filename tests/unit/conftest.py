"""Fixtures of the Vault transport's unit tests: a throwaway CA and an https "Vault"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.http_servers import Pki, Quiet, Seen, make_pki, serving


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https_vault(pki: Pki) -> Iterator[tuple[str, Seen]]:
    """An https server answering sys/health, for vault.test only; it keeps the headers."""
    seen = Seen()

    class Handler(Quiet):
        def do_GET(self) -> None:
            seen.headers.append(dict(self.headers.items()))
            self.answer(200, {"initialized": True, "sealed": False, "standby": False,
                              "version": "1.16.3"})

    with serving(Handler, pki) as addr:
        yield addr, seen
