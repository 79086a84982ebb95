"""``file:PATH`` (the whole file) and ``file:PATH#KEY`` (one key of a JSON/TOML object)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

from entrypoint.describe import os_reason
from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.render.safepath import read_file, reason
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Source, to_secrets
from entrypoint.sources.local.folder import parse_object

WHOLE_FILE = ""  # the key under which file:PATH without #KEY is stored


class FileSource(Source):
    name = "file"

    def describe(self, path: str) -> str:
        return f"file {path}"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        file = Path(path)
        try:
            # Not by path: a link planted in a folder the app can write is not followed
            # (file() in templates checked this path; this reads what was checked).
            raw = read_file(file)
        except FileNotFoundError:
            raise SecretNotFound(f"file {path} does not exist",
                                 hint="expected a readable file for a file: reference") from None
        except PermissionError:
            raise PermissionDenied(f"file {path} is not readable") from None
        except OSError as exc:
            raise ConfigError(f"file {path} cannot be read as UTF-8 text: {reason(exc)}"
                              ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"file {path} cannot be read as UTF-8 text: "
                              f"{os_reason(exc)}") from None
        data: dict[str, Secret] = {WHOLE_FILE: Secret(text)}
        if file.suffix in (".json", ".toml") or text.lstrip().startswith("{"):
            # Only an error if a #KEY is asked for; the resolver says so then.
            with contextlib.suppress(ConfigError):
                data.update(to_secrets(parse_object(raw, file)))
        return Fetched(data=data, kind="file", refresh=Refresh.WATCH,
                       fetched_at=time.monotonic())

    def watched_files(self, path: str, version: int | None) -> Sequence[Path]:
        return [Path(path)]
