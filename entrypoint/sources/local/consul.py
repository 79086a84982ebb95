"""``consul:KEY`` answered from the local secrets directory: ``DIR/consul/KEY`` (a text file)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from entrypoint.describe import os_reason
from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Source


class LocalConsulSource(Source):
    name = "consul (local)"

    def __init__(self, root: Path) -> None:
        self.root = root / "consul"

    def describe(self, path: str) -> str:
        return f"local consul folder {self.root}"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        clean = path.strip("/")
        if ".." in Path(clean).parts:
            raise ConfigError(f"consul key {path!r} leaves the local secrets directory")
        file = self.root / clean
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretNotFound(f"consul key {clean} not found in {self.root}",
                                 hint=f"expected a file {file}") from None
        except PermissionError:
            # 77, as for the vault: side of the local directory (a file or a folder).
            raise PermissionDenied(f"consul key file {file} is not readable (it, or a "
                                   "folder on its way, is closed to the entrypoint's user)"
                                   ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"consul key file {file} cannot be read: "
                              f"{os_reason(exc)}") from None
        return Fetched(data={"": Secret(text.rstrip("\n"))}, kind="consul",
                       refresh=Refresh.WATCH, fetched_at=time.monotonic())

    def watched_files(self, path: str, version: int | None) -> Sequence[Path]:
        return [self.root / path]
