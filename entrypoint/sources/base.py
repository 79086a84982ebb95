"""The protocol every secret source implements, and what a fetch returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from entrypoint.secret import Secret


@dataclass(frozen=True)
class Fetched:
    """One read of one path: its keys and what is known about its life."""

    data: Mapping[str, Secret]
    kind: str  # "local", "file", "consul", "kv1", "kv2", "leased", "static-creds"
    version: int | None = None
    lease_id: str | None = field(default=None, repr=False)
    lease_duration: float | None = None
    renewable: bool = False
    # For database static roles: seconds until Vault rotates the password.
    ttl: float | None = None
    fetched_at: float = 0.0

    def value(self, key: str) -> Secret | None:
        return self.data.get(key)

    def plain(self) -> dict[str, str]:
        """Revealed values, for template rendering only."""
        return {k: v.reveal() for k, v in self.data.items()}


class Source(Protocol):
    """A place secrets come from. ``name`` is used in logs and errors ("vault", "local")."""

    name: str

    def fetch(self, path: str, version: int | None = None) -> Fetched: ...

    def describe(self, path: str) -> str:
        """Where ``path`` lives, for error messages (never a value)."""
        ...

    def close(self) -> None: ...


def to_secrets(data: Mapping[str, Any]) -> dict[str, Secret]:
    """Wrap every value; non-strings are JSON-encoded (documented choice)."""
    out: dict[str, Secret] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[str(key)] = Secret(value)
        else:
            out[str(key)] = Secret(json.dumps(value, separators=(",", ":"), sort_keys=True))
    return out
