"""Kubernetes: the pod's service account token, read afresh at every login (it rotates)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError
from entrypoint.sources.vault.auth import LoginResult, refused, result_of

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient


@dataclass
class KubernetesLogin:
    role: str
    token_file: Path
    mount: str = "kubernetes"
    name: str = "kubernetes"

    @classmethod
    def from_config(cls, config: Config, mount: str) -> KubernetesLogin:
        if not config.vault_role:
            raise ConfigError("vault_auth kubernetes needs a role",
                              hint="set ENTRYPOINT_VAULT_ROLE to the Vault kubernetes role")
        return cls(role=config.vault_role, token_file=config.vault_kubernetes_token_file,
                   mount=mount)

    def login(self, client: VaultClient) -> LoginResult:
        from entrypoint.sources.vault import answers as hx

        try:
            jwt = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"kubernetes service account token {self.token_file} cannot be "
                              f"read: {exc.strerror}",
                              hint="set ENTRYPOINT_VAULT_KUBERNETES_TOKEN_FILE") from None
        try:
            response = client.call(f"login at auth/{self.mount}/login", lambda: (
                client.anonymous.post(f"/v1/auth/{self.mount}/login",
                                      {"role": self.role, "jwt": jwt})))
        except hx.VaultError as exc:
            raise refused(self.describe(), exc) from None
        return result_of(response, self.describe())

    def describe(self) -> str:
        return f"kubernetes (auth/{self.mount}) role {self.role}"
