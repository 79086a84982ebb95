"""The login method nobody asked for: ``aws-iam``, picked when no token is given.

A user who forgot ``VAULT_TOKEN`` (or mistyped it) would otherwise read "no AWS
credentials found" and wonder why AWS is involved at all: the error says why it was tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entrypoint.errors import AuthError

if TYPE_CHECKING:
    from entrypoint.sources.vault.auth import LoginMethod, LoginResult
    from entrypoint.sources.vault.client import VaultClient

WHY = ("aws-iam was tried because no Vault token was found: VAULT_TOKEN, "
       "vault_token_file and vault_auth are all unset")


class ChosenByDefault:
    """Wraps the default method; a refused login names the reason it was chosen."""

    def __init__(self, inner: LoginMethod) -> None:
        self.inner = inner
        self.name = inner.name
        self.mount = inner.mount

    def login(self, client: VaultClient) -> LoginResult:
        try:
            return self.inner.login(client)
        except AuthError as exc:
            raise AuthError(f"{exc.message}; {WHY}", hint=exc.hint) from None

    def describe(self) -> str:
        return self.inner.describe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
