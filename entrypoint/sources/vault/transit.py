"""``transit:KEY#CIPHERTEXT`` (and ``vault:v1:...`` with the ``transit_key`` setting, as
bank-vaults vault-env writes them): values stored encrypted in the image or the task
definition, decrypted once at start by Vault's transit engine with the entrypoint's login.

A decryption creates nothing and never changes: its value is ``Refresh.NEVER``.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

from entrypoint.errors import ConfigError
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Source
from entrypoint.sources.vault import kv

if TYPE_CHECKING:
    from entrypoint.sources.vault.source import VaultSource


def split(path: str, default_key: str | None, mount: str) -> tuple[str, str, str]:
    """``[MOUNT/]KEY#CIPHERTEXT`` (KEY empty: the ``transit_key`` setting) ->
    (mount, key, ciphertext)."""
    name, _, ciphertext = path.partition("#")
    name = name.strip("/") or (default_key or "").strip("/")
    if not name:
        raise ConfigError("a value vault:vN:... is a transit ciphertext, and no transit key "
                          "is set to decrypt it",
                          hint="set transit_key (ENTRYPOINT_TRANSIT_KEY), or write "
                               "transit:KEY#vault:vN:...")
    where, _, key = name.rpartition("/")
    return (where or mount).strip("/"), key, ciphertext


class TransitSource(Source):
    name = "transit"

    def __init__(self, vault: VaultSource, default_key: str | None, mount: str) -> None:
        self.vault = vault
        self.default_key = default_key
        self.mount = mount

    def describe(self, path: str) -> str:
        mount, key, _ = split(path, self.default_key, self.mount)
        addr = self.vault.client.connection.addr
        return f"transit key {key} on mount {mount}/ of Vault at {addr}"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        mount, key, ciphertext = split(path, self.default_key, self.mount)
        started = time.monotonic()
        api = f"{mount}/decrypt/{key}"
        response = self.vault._authed(f"decrypt with transit key {key}", api, lambda: (
            self.vault.client.api.post(kv.api_path(api), {"ciphertext": ciphertext})))
        data = response.get("data") if isinstance(response, dict) else None
        encoded = data.get("plaintext") if isinstance(data, dict) else None
        if not isinstance(encoded, str):
            raise ConfigError(f"transit:{mount}/{key}: Vault's answer holds no plaintext")
        return Fetched(data={ciphertext: Secret(decode(encoded, f"transit:{mount}/{key}"))},
                       kind="transit", refresh=Refresh.NEVER, fetched_at=started)


def decode(encoded: str, where: str) -> str:
    """Transit's plaintext is base64 of the bytes that were encrypted: text for the env."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError(f"{where}: the decrypted value is not UTF-8 text, which an "
                          "environment variable must be",
                          hint="encrypt the base64 of UTF-8 text "
                               "(vault write transit/encrypt/KEY plaintext=$(base64 <<< TEXT))"
                          ) from None
