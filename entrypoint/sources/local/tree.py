"""A folder of the local secrets directory: ``secrets = ["kv/app/"]`` without a server.

Answers as Vault's folder read does (``sources/vault/folders.py``), so that what works
locally works in production: every secret beneath ``DIR/kv/app`` (``.json`` or ``.toml``,
recursively; also ``DIR/kv/data/app``, Vault's API layout), one read whose parts are the
secrets in path order. ``NAME@N.json`` files (kept versions) and hidden entries (editors'
swap files, Kubernetes' ``..data``) are not secrets. The folders are watched whole: a
file added beneath them is noticed like an edit.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.errors import PermissionDenied, SecretNotFound
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, folder_fetched, to_secrets
from entrypoint.sources.local.folder import EXTENSIONS, load_object

if TYPE_CHECKING:
    from entrypoint.sources.local.folder import LocalSource

_KEPT_VERSION = re.compile(r"@\d+\Z")


def fetch_tree(source: LocalSource, path: str) -> Fetched:
    started = time.monotonic()
    files = tree_files(source, path)
    parts: list[tuple[str, Mapping[str, Secret]]] = [
        (name, to_secrets(load_object(file))) for name, file in files.items()]
    return folder_fetched(parts, kind="local folder", refresh=Refresh.WATCH,
                          fetched_at=started)


def tree_roots(source: LocalSource, path: str) -> list[Path]:
    """The folders that hold ``path``'s secrets, both layouts, also one not made yet:
    a secret put in it is a change of the folder."""
    return [base for base, _ in _bases(source, path)]


def tree_files(source: LocalSource, path: str) -> dict[str, Path]:
    """Secret path -> its file, for every secret beneath the folder ``path``."""
    clean = path.strip("/")
    bases = _bases(source, path)
    if not any(base.is_dir() for base, _ in bases):
        raise SecretNotFound(
            f"folder {clean}/ not found in local secrets directory {source.root}",
            hint=f"expected a folder {source.root / clean} of .json or .toml files")
    best: dict[str, tuple[tuple[int, int], Path]] = {}
    for layout, (base, skip) in enumerate(bases):
        for file in _files(base, skip):
            name = f"{clean}/{file.relative_to(base).with_suffix('').as_posix()}"
            rank = (layout, EXTENSIONS.index(file.suffix))
            if name not in best or rank < best[name][0]:
                best[name] = (rank, file)
    if not best:
        raise SecretNotFound(
            f"no secret under folder {clean}/ in local secrets directory {source.root}",
            hint=f"expected .json or .toml files beneath {source.root / clean}")
    return {name: best[name][1] for name in sorted(best)}


def _bases(source: LocalSource, path: str) -> list[tuple[Path, str]]:
    """(folder, a top-level entry of it to skip): the path as written, and Vault's API
    layout (``MOUNT/data/REST``). At a mount's root the written layout skips ``data``,
    which is the API layout's."""
    clean = path.strip("/")
    source.candidates(clean)  # refuses '..' and data/ after the mount, as for a secret
    mount, _, rest = clean.partition("/")
    api = source.root / mount / "data" / rest if rest else source.root / mount / "data"
    return [(source.root / clean, "" if rest else "data"), (api, "")]


def _files(base: Path, skip: str) -> list[Path]:
    if not base.is_dir():
        return []
    found: list[Path] = []

    def refuse(exc: OSError) -> None:
        if isinstance(exc, PermissionError):
            raise PermissionDenied(
                f"local secrets directory: folder {exc.filename} is not readable",
                hint="expected folders the entrypoint's user can open (chmod o+rx, "
                     "or run as their owner)")
        raise exc

    for folder, dirs, names in os.walk(base, onerror=refuse):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (here == base and d == skip))
        for name in names:
            file = here / name
            if (name.startswith(".") or file.suffix not in EXTENSIONS
                    or _KEPT_VERSION.search(file.stem)):
                continue
            found.append(file)
    return found
