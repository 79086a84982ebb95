"""What names one read: a source's scheme, a path in it and, for KV v2, a version."""

from __future__ import annotations

from typing import NamedTuple


class SourceKey(NamedTuple):
    """One distinct read in a generation: ``vault:kv/app/db?version=3`` is
    ``SourceKey("vault", "kv/app/db", 3)``. Every path is read once per generation."""

    scheme: str
    path: str
    version: int | None = None

    @property
    def label(self) -> str:
        """``scheme:path``: how logs, metrics and ``status`` name the key."""
        return f"{self.scheme}:{self.path}"

    @property
    def ref(self) -> str:
        """The reference a user writes for this key (``?version=`` included)."""
        return self.label + (f"?version={self.version}" if self.version is not None else "")

    def sort_key(self) -> tuple[str, str, int]:
        return (self.scheme, self.path, self.version or 0)


def bulk_key(path: str) -> SourceKey:
    """A ``secrets`` entry as the read it names: ``kv/app/db`` is one secret, ``kv/app/``
    (a trailing slash) the folder, every secret under it (docs/configuration.md). The
    folder keeps its slash, so it is a read apart from a secret of the same name."""
    clean = path.strip("/")
    return SourceKey("vault", clean + "/" if clean and path.endswith("/") else clean)
