"""The local secrets directory: ``DIR/kv/app/db.json`` answers ``vault:kv/app/db#KEY``.

The embedded default for running without any server. A path maps to ``DIR/PATH.json``
or ``DIR/PATH.toml`` holding one object. KV v2 paths may be written with or without
the ``data/`` segment, as with Vault.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.sources.base import Fetched, to_secrets

EXTENSIONS = (".json", ".toml")


class LocalSource:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def candidates(self, path: str) -> list[Path]:
        clean = path.strip("/")
        if ".." in Path(clean).parts:
            raise ConfigError(f"secret path {path!r} leaves the local secrets directory",
                              hint="expected a path without '..'")
        names = [clean]
        mount, sep, rest = clean.partition("/data/")
        if sep:
            names.append(f"{mount}/{rest}")
        return [self.root / f"{name}{ext}" for name in names for ext in EXTENSIONS]

    def describe(self, path: str) -> str:
        return f"local secrets directory {self.root}"

    def file_for(self, path: str) -> Path:
        for candidate in self.candidates(path):
            if candidate.is_file():
                return candidate
        raise SecretNotFound(
            f"secret {path} not found in local secrets directory {self.root}",
            hint=f"expected a file {self.root / path.strip('/')}.json holding a JSON object",
        )

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        file = self.file_for(path)
        data = load_object(file)
        return Fetched(data=to_secrets(data), kind="local", version=version,
                       fetched_at=time.monotonic())

    def close(self) -> None:
        pass


def load_object(file: Path) -> dict[str, Any]:
    """Read a JSON or TOML file that must hold one object."""
    try:
        raw = file.read_bytes()
    except PermissionError:
        raise PermissionDenied(f"secret file {file} is not readable") from None
    except OSError as exc:
        raise ConfigError(f"secret file {file} cannot be read: {exc.strerror}") from None
    return parse_object(raw, file)


def parse_object(raw: bytes, file: Path) -> dict[str, Any]:
    """The one object a JSON or TOML file's bytes hold (the suffix tells which)."""
    try:
        text = raw.decode("utf-8")
        if file.suffix == ".toml":
            import tomllib  # only for TOML files: it costs resident memory

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except RecursionError:
        raise ConfigError(f"secret file {file} is nested too deeply to be read",
                          hint="expected one object of key/value pairs") from None
    except (UnicodeDecodeError, ValueError) as exc:
        # The parser's message may quote the file's content: name the place only.
        kind = "TOML" if file.suffix == ".toml" else "JSON"
        line = getattr(exc, "lineno", None)
        where = f"{file}:{line}" if line else str(file)
        raise ConfigError(f"secret file {where} is not valid {kind}",
                          hint="expected one object of key/value pairs") from None
    if not isinstance(data, dict):
        raise ConfigError(f"secret file {file} holds a {type(data).__name__}",
                          hint="expected one object of key/value pairs")
    return data
