"""AppRole: a role_id and a secret_id (setting, file, or VAULT_ROLE_ID / VAULT_SECRET_ID)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError
from entrypoint.secret import Secret
from entrypoint.sources.vault.auth import LoginResult, refused, result_of

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient


@dataclass
class AppRoleLogin:
    role_id: str
    mount: str = "approle"
    secret_id: Secret | None = field(default=None, repr=False)
    secret_id_file: Path | None = None
    name: str = "approle"

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str],
                    mount: str) -> AppRoleLogin:
        role_id = config.vault_approle_role_id or environ.get("VAULT_ROLE_ID")
        if not role_id:
            raise ConfigError("vault_auth approle needs a role_id",
                              hint="set ENTRYPOINT_VAULT_APPROLE_ROLE_ID or VAULT_ROLE_ID")
        secret_id = config.vault_approle_secret_id
        if secret_id is None and environ.get("VAULT_SECRET_ID"):
            secret_id = Secret(environ["VAULT_SECRET_ID"])
        return cls(role_id=role_id, mount=mount, secret_id=secret_id,
                   secret_id_file=config.vault_approle_secret_id_file)

    def _secret_id(self) -> str | None:
        if self.secret_id_file is not None:
            # Read at every login: a secret_id delivered by an orchestrator may be replaced.
            try:
                return self.secret_id_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ConfigError(f"vault_approle_secret_id_file {self.secret_id_file} cannot "
                                  f"be read: {exc.strerror}") from None
        return self.secret_id.reveal() if self.secret_id is not None else None

    def login(self, client: VaultClient) -> LoginResult:
        from entrypoint.sources.vault import answers as hx

        secret_id = self._secret_id()
        try:
            response = client.call(f"login at auth/{self.mount}/login", lambda: (
                client.anonymous.post(f"/v1/auth/{self.mount}/login", {
                    "role_id": self.role_id,
                    **({"secret_id": secret_id} if secret_id is not None else {})})))
        except hx.VaultError as exc:
            raise refused(self.describe(), exc,
                          hint="check the role_id and secret_id, and that the secret_id has "
                               "not expired or run out of uses") from None
        return result_of(response, self.describe())

    def describe(self) -> str:
        return f"approle (auth/{self.mount})"
