"""Ways to obtain a Vault token; one module per method, chosen by ``vault_auth``.

Default when ``vault_auth`` is unset (documented): ``token`` if ``VAULT_TOKEN`` or
``vault_token_file`` is set, else ``aws-iam`` -- the headline method, which needs nothing
baked into the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from entrypoint.config.model import Config
from entrypoint.errors import AuthError, ConfigError
from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient

METHODS = ("token", "aws-iam", "approle", "kubernetes")
DEFAULT_MOUNTS = {"token": "token", "aws-iam": "aws", "approle": "approle",
                  "kubernetes": "kubernetes"}


@dataclass(frozen=True)
class LoginResult:
    """A token and what Vault said about it. ``created`` is False for a token the user
    gave us (never revoked by us)."""

    token: Secret
    ttl: float
    renewable: bool
    policies: tuple[str, ...] = ()
    created: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A batch token cannot be renewed or revoked, and caps its leases at its own expiry.
    batch: bool = False


class LoginMethod(Protocol):
    name: str
    mount: str

    def login(self, client: VaultClient) -> LoginResult:
        """Obtain a token; raise AuthError with a clear message when refused."""
        ...

    def describe(self) -> str:
        """Method, mount and role for logs and errors (never a credential)."""
        ...


def method_name(config: Config, environ: Mapping[str, str]) -> str:
    if config.vault_auth:
        return config.vault_auth
    if environ.get("VAULT_TOKEN") or config.vault_token_file is not None:
        return "token"
    return "aws-iam"


def mount_of(config: Config, name: str) -> str:
    mount = (config.vault_auth_mount or DEFAULT_MOUNTS[name]).strip("/")
    if not mount:
        raise ConfigError(f"{config.origins.get('vault_auth_mount', 'vault_auth_mount')}: "
                          "empty auth mount path")
    return mount


def choose(config: Config, environ: Mapping[str, str]) -> LoginMethod:
    name = method_name(config, environ)
    mount = mount_of(config, name)
    if name == "token":
        from entrypoint.sources.vault.auth.token import TokenLogin

        return TokenLogin.from_config(config, environ)
    if name == "aws-iam":
        from entrypoint.sources.vault.auth.aws_iam import AwsIamLogin

        aws = AwsIamLogin.from_config(config, mount)
        if config.vault_auth:
            return aws
        from entrypoint.sources.vault.auth.default import ChosenByDefault

        return ChosenByDefault(aws)
    if name == "approle":
        from entrypoint.sources.vault.auth.approle import AppRoleLogin

        return AppRoleLogin.from_config(config, environ, mount)
    if name == "kubernetes":
        from entrypoint.sources.vault.auth.kubernetes import KubernetesLogin

        return KubernetesLogin.from_config(config, mount)
    raise ConfigError(f"vault_auth: unknown method {name!r}", hint=f"one of {', '.join(METHODS)}")


def result_of(response: Any, method: str) -> LoginResult:
    """The ``auth`` block of a login response, checked."""
    auth = response.get("auth") if isinstance(response, dict) else None
    if not isinstance(auth, dict) or not auth.get("client_token"):
        raise AuthError(f"{method}: Vault's login response carries no token")
    policies = auth.get("token_policies") or auth.get("policies") or []
    return LoginResult(token=Secret(str(auth["client_token"])),
                       ttl=float(auth.get("lease_duration") or 0),
                       renewable=bool(auth.get("renewable")),
                       policies=tuple(str(p) for p in policies),
                       metadata={str(k): str(v) for k, v in (auth.get("metadata") or {}).items()},
                       batch=auth.get("token_type") == "batch")


def refused(method: str, exc: BaseException, hint: str | None = None) -> AuthError:
    from entrypoint.sources.vault.client import vault_message

    return AuthError(f"{method}: login refused by Vault: {vault_message(exc)}", hint=hint)
