"""A folder of a KV mount: ``secrets = ["kv/app/"]`` exports every secret under it.

A folder is one read in a generation. It is walked with LIST, recursively (KV v2:
``LIST <mount>/metadata/<path>/``, KV v1: ``LIST <mount>/<path>/``), then every secret
found is read. The answer is one :class:`Fetched` polled like a KV secret: its ``parts``
are the secrets in path order (``base.folder_fetched``), its ``data`` their union. Bulk
export turns the parts into variables and decides collisions, for a folder exactly as
for two listed paths (``plan/resolve.py``).

A KV v2 secret whose latest version is deleted or destroyed is still listed by Vault
but has nothing to read: it is left out, as is one removed between the LIST and its read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from entrypoint.errors import ConfigError, SecretNotFound
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, folder_fetched
from entrypoint.sources.vault import kv

if TYPE_CHECKING:
    from entrypoint.sources.vault.source import VaultSource

# Secrets of one folder read at once (each read is one request).
READERS = 4


def fetch_folder(source: VaultSource, path: str) -> Fetched:
    """Every secret under the folder ``path`` (``kv/app/``), read now."""
    started = time.monotonic()
    clean = path.strip("/")
    label = clean + "/"
    mount = source.mount_of(clean)
    if mount.version not in (1, 2):
        raise ConfigError(f"vault:{label}: a folder is read from a KV v1 or v2 mount; "
                          f"{clean} is on {mount.label}",
                          hint="list the secrets one by one, without the trailing slash")
    rest = clean[len(mount.path):]
    names = _walk(source, mount, rest + "/" if rest else "", label)
    if not names:
        hint = ("write the path without data/: it is added for KV v2"
                if mount.version == 2 and (rest + "/").startswith("data/") else None)
        raise SecretNotFound(f"vault:{label}: no secret under folder {label} on {mount.label}",
                             hint=hint)
    with ThreadPoolExecutor(max_workers=min(READERS, len(names)),
                            thread_name_prefix="fetch-folder") as pool:
        read = list(pool.map(lambda name: _read(source, mount, name), names))
    parts = [(mount.path + name, data) for name, data in zip(names, read, strict=True)
             if data is not None]
    if not parts:
        raise SecretNotFound(f"vault:{label}: every secret under folder {label} on "
                             f"{mount.label} is deleted")
    return folder_fetched(parts, kind=f"kv{mount.version} folder", refresh=Refresh.POLL,
                          fetched_at=started)


def _walk(source: VaultSource, mount: kv.Mount, folder: str, label: str) -> list[str]:
    """Secret names under ``folder`` (relative to the mount, "" or ending in ``/``),
    recursively, each relative to the mount."""
    found: list[str] = []
    todo = [folder]
    while todo:
        current = todo.pop()
        for entry in _list(source, mount, current, label):
            if entry.endswith("/"):
                todo.append(current + entry)
            elif entry:
                found.append(current + entry)
    return sorted(found)


def _list(source: VaultSource, mount: kv.Mount, folder: str, label: str) -> list[str]:
    """One LIST; an empty list when Vault knows no such folder (a 404)."""
    from entrypoint.sources.vault import answers as hx

    url = kv.api_path(f"{mount.path}metadata/{folder}" if mount.version == 2
                      else f"{mount.path}{folder}")
    try:
        response: Any = source._authed(
            f"list {mount.path}{folder}", label,
            lambda: source.client.api.list(url), raw_404=True)
    except hx.InvalidPath:
        return []
    data = response.get("data") if isinstance(response, dict) else None
    keys = data.get("keys") if isinstance(data, dict) else None
    return [str(k) for k in keys] if isinstance(keys, list) else []


def _read(source: VaultSource, mount: kv.Mount, name: str) -> Mapping[str, Secret] | None:
    """One secret of the folder; None when there is nothing to read (deleted, gone)."""
    from entrypoint.sources.vault import answers as hx

    full = mount.path + name
    url = kv.api_path(kv.v2_data_path(mount, name) if mount.version == 2 else full)
    try:
        response = source._authed(f"read {full}", full,
                                  lambda: source.client.api.get(url), raw_404=True)
    except hx.InvalidPath:
        return None
    if mount.version == 2:
        return kv.kv2_fetched(full, response, 0.0).data
    return kv.kv1_fetched(full, response, 0.0).data
