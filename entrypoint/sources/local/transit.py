"""``transit:`` values answered by the local secrets directory: ``DIR/MOUNT/KEY.json``
(``DIR/transit/KEY.json`` by default) maps each ciphertext to its plaintext, so that an
image whose task definition holds ciphertexts also runs on a laptop without Vault."""

from __future__ import annotations

import json
import time
from pathlib import Path

from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Source
from entrypoint.sources.vault.transit import split


class LocalTransitSource(Source):
    name = "transit (local)"

    def __init__(self, root: Path, default_key: str | None, mount: str) -> None:
        self.root = root
        self.default_key = default_key
        self.mount = mount

    def _file(self, path: str) -> tuple[Path, str]:
        mount, key, ciphertext = split(path, self.default_key, self.mount)
        if ".." in Path(mount, key).parts:
            raise ConfigError(f"transit key {mount}/{key} leaves the local secrets directory")
        return self.root / mount / f"{key}.json", ciphertext

    def describe(self, path: str) -> str:
        return f"local transit file {self._file(path)[0]}"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        file, ciphertext = self._file(path)
        try:
            table = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SecretNotFound(f"transit key file {file} not found",
                                 hint="expected a JSON object from ciphertext to plaintext"
                                 ) from None
        except PermissionError:
            raise PermissionDenied(f"transit key file {file} is not readable") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            # The error's kind, not its text: a decoding error quotes bytes of the file.
            from entrypoint.describe import error_kind

            raise ConfigError(f"transit key file {file} is not a JSON object: "
                              f"{error_kind(exc)}") from None
        plaintext = table.get(ciphertext) if isinstance(table, dict) else None
        if not isinstance(plaintext, str):
            raise SecretNotFound(f"transit key file {file} has no plaintext for this "
                                 "ciphertext",
                                 hint="expected the ciphertext as a key, its text as value")
        return Fetched(data={ciphertext: Secret(plaintext)}, kind="transit",
                       refresh=Refresh.NEVER, fetched_at=time.monotonic())
