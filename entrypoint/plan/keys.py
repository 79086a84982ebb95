"""What names one read: a source's scheme, a path in it and, for KV v2, a version."""

from __future__ import annotations

from typing import NamedTuple


class SourceKey(NamedTuple):
    """One distinct read in a generation: ``vault:kv/app/db?version=3`` is
    ``SourceKey("vault", "kv/app/db", 3)``. Every path is read once per generation."""

    scheme: str
    path: str
    version: int | None = None
    # A write (``vault:pki/issue/web#certificate?common_name=app.internal``): its
    # parameters, sorted by name. Each distinct (path, params) is issued once per
    # generation, so the cert, key and chain of one template come from one answer.
    params: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """``scheme:path``: how logs, metrics and ``status`` name the key."""
        return f"{self.scheme}:{self.path}"

    @property
    def ref(self) -> str:
        """The reference a user writes for this key (``?version=`` included); a write's
        parameters by name only (``?common_name=…``): some writes take secret values."""
        if self.params:
            return self.label + "?" + "&".join(f"{name}=…" for name, _ in self.params)
        return self.label + (f"?version={self.version}" if self.version is not None else "")

    def sort_key(self) -> tuple[str, str, int, tuple[tuple[str, str], ...]]:
        return (self.scheme, self.path, self.version or 0, self.params)


def bulk_key(path: str) -> SourceKey:
    """A ``secrets`` entry as the read it names: ``kv/app/db`` is one secret, ``kv/app/``
    (a trailing slash) the folder, every secret under it (docs/configuration.md). The
    folder keeps its slash, so it is a read apart from a secret of the same name."""
    clean = path.strip("/")
    return SourceKey("vault", clean + "/" if clean and path.endswith("/") else clean)
