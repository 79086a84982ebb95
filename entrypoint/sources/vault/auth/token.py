"""A token the user gave: ``VAULT_TOKEN``, or a file such as a Vault Agent sink.

The file is read again at every "login", which is how a token that stopped working is
replaced by the one the agent wrote since. Such a token is never revoked by us.

A sink configured with ``wrap_ttl`` writes the wrap info as JSON instead of the token;
it is unwrapped once (a wrapping token is single-use) and the result kept until the file
changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.config.model import Config
from entrypoint.errors import AuthError, ConfigError
from entrypoint.secret import Secret
from entrypoint.sources.vault.auth import LoginResult

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient


@dataclass
class TokenLogin:
    env_token: Secret | None = field(default=None, repr=False)
    token_file: Path | None = None
    name: str = "token"
    mount: str = "token"
    # The wrap info last unwrapped and what it gave: the same file is not unwrapped twice.
    _unwrapped: tuple[str, Secret] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str]) -> TokenLogin:
        value = environ.get("VAULT_TOKEN", "").strip()
        login = cls(env_token=Secret(value) if value else None,
                    token_file=config.vault_token_file)
        if login.env_token is None and login.token_file is None:
            raise ConfigError("vault_auth token needs VAULT_TOKEN or vault_token_file",
                              hint="set VAULT_TOKEN, or ENTRYPOINT_VAULT_TOKEN_FILE to a "
                                   "Vault Agent sink")
        return login

    def _origin(self) -> str:
        return f"token file {self.token_file}" if self.token_file else "VAULT_TOKEN"

    def _read(self) -> str:
        if self.token_file is not None:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise AuthError(f"token file {self.token_file} cannot be read: "
                                f"{exc.strerror}") from None
            if not token:
                raise AuthError(f"token file {self.token_file} is empty")
            return token
        assert self.env_token is not None
        return self.env_token.reveal()

    def _unwrap(self, client: VaultClient, text: str) -> str:
        from entrypoint.sources.vault import answers as hx

        if self._unwrapped is not None and self._unwrapped[0] == text:
            return self._unwrapped[1].reveal()
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        wrapping = info.get("token") if isinstance(info, dict) else None
        if not isinstance(wrapping, str) or not wrapping:
            raise AuthError(f"{self._origin()} holds JSON that is not a wrapped "
                            "token (expected Vault Agent's wrap info with a token field)")
        try:
            response = client.call("unwrap at sys/wrapping/unwrap", lambda: (
                client.anonymous.post("/v1/sys/wrapping/unwrap",
                                      headers={"X-Vault-Token": wrapping})))
        except hx.VaultError as exc:
            from entrypoint.sources.vault.client import vault_message

            raise AuthError(f"the wrapped token in {self._origin()} cannot be unwrapped: "
                            f"{vault_message(exc)}",
                            hint="a wrapping token works once and expires: another process "
                                 "may have unwrapped it, or its wrap_ttl has passed") from None
        token = _token_of(response)
        if not isinstance(token, str) or not token:
            raise AuthError(f"the wrapped answer in {self._origin()} holds no token")
        self._unwrapped = (text, Secret(token))
        return token

    def login(self, client: VaultClient) -> LoginResult:
        from entrypoint.sources.vault import answers as hx

        token = self._read()
        if token.startswith("{"):
            token = self._unwrap(client, token)
        try:
            response = client.call("token lookup at auth/token/lookup-self", lambda: (
                client.anonymous.get("/v1/auth/token/lookup-self",
                                     headers={"X-Vault-Token": token})))
        except hx.Forbidden as exc:
            from entrypoint.sources.vault.client import token_is_invalid

            if token_is_invalid(exc):
                raise AuthError(f"the token from {self._origin()} is not valid (expired, "
                                "revoked or from another Vault)",
                                hint="give a current token, or use another vault_auth method"
                                ) from None
            # Only the `default` policy grants lookup-self: a token made without it works
            # but cannot describe itself. Use it; its TTL is unknown, so it is not renewed.
            client.log.warning("vault: the token from %s may not look itself up (no "
                               "`default` policy?): its TTL is unknown and it is not renewed",
                               self._origin())
            return LoginResult(token=Secret(token), ttl=0.0, renewable=False, created=False)
        except hx.VaultError as exc:
            from entrypoint.sources.vault.client import vault_message

            raise AuthError(f"token lookup for {self._origin()} failed: "
                            f"{vault_message(exc)}") from None
        data = response.get("data") or {} if isinstance(response, dict) else {}
        policies = data.get("policies") or []
        return LoginResult(token=Secret(token), ttl=float(data.get("ttl") or 0),
                           renewable=bool(data.get("renewable")),
                           policies=tuple(str(p) for p in policies), created=False,
                           batch=data.get("type") == "batch")

    def describe(self) -> str:
        return f"token ({self._origin()})"


def _token_of(response: object) -> str | None:
    """The token in an unwrapped answer. Vault Agent's sink wraps the token it holds with
    sys/wrapping/wrap, so it comes back as `data.token`; a login wrapped by the client
    (X-Vault-Wrap-TTL on the login) comes back as `auth.client_token`."""
    if not isinstance(response, dict):
        return None
    auth = response.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("client_token"), str):
        return str(auth["client_token"])
    data = response.get("data")
    if isinstance(data, dict) and isinstance(data.get("token"), str):
        return str(data["token"])
    return None
