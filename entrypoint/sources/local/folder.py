"""The local secrets directory: ``DIR/kv/app/db.json`` answers ``vault:kv/app/db#KEY``.

The embedded default for running without any server. A path maps to ``DIR/PATH.json``
or ``DIR/PATH.toml`` holding one object (or ``DIR/MOUNT/data/REST.json``, Vault's API
layout); ``?version=N`` maps to ``DIR/PATH@N.json``. A folder (``kv/app/``, from
``secrets``) is every such file beneath ``DIR/kv/app`` (``tree.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from entrypoint.describe import value_kind
from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.sources.base import Fetched, Refresh, Source, to_secrets

EXTENSIONS = (".json", ".toml")


class LocalSource(Source):
    """Answers as Vault would, so that what works locally works in production: a path with
    ``data/`` after the mount is refused (Vault adds it for KV v2; written twice it finds
    nothing), and ``?version=N`` reads only a file kept for that version."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def candidates(self, path: str, version: int | None = None) -> list[Path]:
        clean = path.strip("/")
        if ".." in Path(clean).parts:
            raise ConfigError(f"secret path {path!r} leaves the local secrets directory",
                              hint="expected a path without '..'")
        mount, _, rest = clean.partition("/")
        if rest == "data" or rest.startswith("data/"):
            # KV v2 is Vault's default: there, secret/data/app/db reads
            # secret/data/data/app/db, which does not exist. Refused here too.
            raise SecretNotFound(
                f"secret {clean}: a path with data/ after the mount is refused, as Vault "
                "refuses it on a KV v2 mount",
                hint=f"write the path without data/ ({mount}/{rest[5:]}): Vault adds it "
                     "for KV v2")
        # The file may also sit where Vault's API would put it (DIR/secret/data/app/db.json).
        names = [clean, f"{mount}/data/{rest}"] if rest else [clean]
        tag = f"@{version}" if version is not None else ""
        return [self.root / f"{name}{tag}{ext}" for name in names for ext in EXTENSIONS]

    def describe(self, path: str) -> str:
        return f"local secrets directory {self.root}"

    def file_for(self, path: str, version: int | None = None) -> Path:
        for candidate in self.candidates(path, version):
            try:
                if candidate.is_file():
                    return candidate
            except PermissionError:
                folder = self._unsearchable(candidate)
                raise PermissionDenied(
                    f"local secrets directory: folder {folder} is not readable",
                    hint="expected folders the entrypoint's user can open (chmod o+rx, "
                         "or run as their owner)") from None
        clean = path.strip("/")
        if version is not None:
            raise SecretNotFound(
                f"version {version} of secret {clean} not found in local secrets directory "
                f"{self.root}",
                hint=f"expected a file {self.root / clean}@{version}.json: a version is "
                     "read only from a file kept for it")
        raise SecretNotFound(
            f"secret {clean} not found in local secrets directory {self.root}",
            hint=f"expected a file {self.root / clean}.json holding a JSON object",
        )

    def _unsearchable(self, candidate: Path) -> Path:
        """The folder on the way to ``candidate`` that may not be searched."""
        folder = self.root
        for part in candidate.relative_to(self.root).parts[:-1]:
            try:
                (folder / part).stat()
            except PermissionError:
                return folder
            folder = folder / part
        return folder

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        if path.endswith("/"):
            from entrypoint.sources.local.tree import fetch_tree

            return fetch_tree(self, path)
        file = self.file_for(path, version)
        data = load_object(file)
        return Fetched(data=to_secrets(data), kind="local", refresh=Refresh.WATCH,
                       version=version,
                       fetched_at=time.monotonic())

    def watched_files(self, path: str, version: int | None) -> Sequence[Path]:
        if path.endswith("/"):
            from entrypoint.sources.local.tree import tree_roots

            return tree_roots(self, path)  # folders: a change anywhere beneath them
        # Every file the lookup considers, not only the one it found: app.json renamed
        # app.toml, or secret/app.json made next to secret/data/app.json (which it wins
        # over), is a change too.
        return self.candidates(path, version)


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
        raise ConfigError(f"secret file {file} holds {value_kind(data)}",
                          hint="expected one object of key/value pairs")
    return data
