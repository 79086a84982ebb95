"""The protocol every secret source implements, and what a fetch returns.

The engine, ``check``, ``status`` and the registry talk to a source only through
:class:`Source`. What a fetched value needs to stay current is said by the value itself
(:class:`Refresh`), never by the class of the source that answered. ``docs/contributing.md``
("Adding a source") walks through a new one.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.errors import EntrypointError
    from entrypoint.plan.keys import SourceKey


class Refresh(enum.Enum):
    """How a fetched value stays current: the engine schedules by this and nothing else."""

    NEVER = "never"      # read once: nothing can change it while the app runs
    POLL = "poll"        # re-read every poll_interval; a new version is a change (KV)
    LEASE = "lease"      # renew the lease, replace it when it cannot be extended
    ROTATED = "rotated"  # the server rotates it itself in ``ttl`` s: re-read just after
    TTL = "ttl"          # a new value at every read, valid ``ttl`` s: replace before then
    WATCH = "watch"      # the source says when it changed (files, Consul blocking queries)


# What a value whose refresh is one of these is replaced by: ``entrypoint rotate``.
DYNAMIC = frozenset({Refresh.LEASE, Refresh.ROTATED, Refresh.TTL})


@dataclass(frozen=True)
class Fetched:
    """One read of one path: its keys and what is known about its life."""

    data: Mapping[str, Secret]
    kind: str  # a label for people (check, status, metrics): "kv2", "leased", "local"...
    refresh: Refresh = Refresh.NEVER
    version: int | None = None
    lease_id: str | None = field(default=None, repr=False)
    lease_duration: float | None = None
    renewable: bool = False
    # ROTATED: seconds until the server rotates it; TTL: seconds the value is valid.
    ttl: float | None = None
    fetched_at: float = 0.0
    # A folder (``secrets = ["kv/app/"]``): each secret under it, (path, keys), in path
    # order; ``data`` is then their union. Bulk export reads these, to name the secret
    # each variable came from.
    parts: tuple[tuple[str, Mapping[str, Secret]], ...] = field(default=(), repr=False)

    def value(self, key: str) -> Secret | None:
        return self.data.get(key)

    def plain(self) -> dict[str, str]:
        """Revealed values, for template rendering only."""
        return {k: v.reveal() for k, v in self.data.items()}

    @property
    def dynamic(self) -> bool:
        return self.refresh in DYNAMIC

    def answers_as(self, other: Fetched) -> bool:
        """The same answer as ``other``: data, version, and for a folder its parts (a
        secret added, removed or moved under it is a change even when ``data`` is not)."""
        return (self.data == other.data and self.version == other.version
                and self.parts == other.parts)


class Renewal(NamedTuple):
    """What a lease renewal granted."""

    duration: float
    renewable: bool
    warnings: list[str]


class LoginState(NamedTuple):
    """Which login made the current token, and until when it is valid (monotonic s)."""

    generation: int
    expires_at: float | None


@dataclass(frozen=True)
class Step:
    """One row of ``entrypoint check`` before any path is read: reaching a server, a login."""

    name: str    # "vault", "login"
    kind: str    # "server", "login"
    detail: str  # an address and version, a method and its policies; never a secret
    error: EntrypointError | None = None


Notify = Callable[[str, Iterable["SourceKey"], bool], None]


class Watcher(Protocol):
    """Threads that call ``notify`` when a watched key changes."""

    def watch_keys(self, keys: Sequence[tuple[SourceKey, Fetched]]) -> None:
        """Watch exactly ``keys`` from now on (each generation's), each from its read
        there if new; stop watching the others."""

    def stop(self) -> None: ...


class Source:
    """A place secrets come from. Subclasses implement :meth:`fetch`; every other method
    has the answer of a source without leases, logins or watches, so a simple source is
    one method long. ``name`` is used in logs and errors ("vault", "local")."""

    name: str = "source"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        raise NotImplementedError

    def describe(self, path: str) -> str:
        """Where ``path`` lives, for error messages (never a value)."""
        return f"{self.name}:{path}"

    # -- writes (``?write&NAME=VALUE``, ``secret(path, name=value)``) -------------------

    def issue(self, path: str, params: tuple[tuple[str, str], ...]) -> Fetched:
        """Write ``params`` to ``path`` and answer what the server gave back (a PKI
        certificate). Once per generation per (path, params); never logs the values."""
        from entrypoint.errors import ConfigError

        raise ConfigError(f"{self.name}:{path}: the {self.name} source makes no writes",
                          hint="?write and secret(path, name=value) are for vault: paths")

    def check_issue(self, path: str, params: tuple[tuple[str, str], ...]
                    ) -> tuple[str, Fetched]:
        """``entrypoint check`` without ``--issue``: what :meth:`issue` would be answered,
        without writing. Raises what it would raise when the server would refuse; returns
        (what was validated, an answer of placeholders). A source that cannot say
        without writing raises, naming --issue."""
        from entrypoint.errors import ConfigError

        raise ConfigError(f"{self.name}:{path}: cannot be checked without writing",
                          hint="entrypoint check --issue makes the write")

    # -- leases (Refresh.LEASE) ---------------------------------------------------------

    def renew_lease(self, lease_id: str, increment: float) -> Renewal:
        """Raises ``LeaseGone`` when the lease is revoked or can no longer be renewed."""
        from entrypoint.errors import LeaseGone

        raise LeaseGone(f"{self.name} hands out no leases")

    def revoke_lease(self, lease_id: str) -> None:
        """Give a lease back; a source without leases has nothing to give."""

    def lookup_lease(self, lease_id: str) -> float | None:
        """Remaining seconds, or None when the server no longer knows the lease."""
        return None

    # -- logging in ---------------------------------------------------------------------

    def end_startup(self) -> None:
        """Start-up is over: from now on a failed call comes back at once (no retries)."""

    def login_state(self) -> LoginState | None:
        """For sources whose leases end with their login token (Vault); memory only."""
        return None

    def auth_status(self) -> dict[str, Any] | None:
        """How this source logged in, for ``entrypoint status`` (never a token)."""
        return None

    def preflight(self) -> list[Step]:
        """``entrypoint check``: reach the server and log in, stopping at the first failed
        step. What the check obtains is its own: it is given back when the source closes."""
        return []

    # -- watching (Refresh.WATCH) -------------------------------------------------------

    def watched_files(self, path: str, version: int | None) -> Sequence[Path]:
        """Files whose change means ``path`` changed (the file watcher covers them)."""
        return ()

    def start_watch(self, keys: Sequence[tuple[SourceKey, Fetched]], notify: Notify,
                    log: logging.Logger) -> Watcher | None:
        """Start watching ``keys`` that have no :meth:`watched_files` (a server's own
        change feed); None when there is nothing to watch. What the watcher watches then
        follows each generation (:meth:`Watcher.watch_keys`)."""
        return None

    # -- closing ------------------------------------------------------------------------

    def keep_on_close(self) -> None:
        """What was fetched must outlive this process (``render`` for an init container):
        do not give it back on :meth:`close`."""

    def close(self) -> None:
        """Give back what this process holds (unless :meth:`keep_on_close` was called)."""


def folder_fetched(parts: Iterable[tuple[str, Mapping[str, Secret]]], *, kind: str,
                   refresh: Refresh, fetched_at: float) -> Fetched:
    """One read of a folder: its secrets sorted by path (every source orders them alike,
    so a collision is reported the same way locally and in production)."""
    ordered = tuple(sorted(parts, key=lambda part: part[0]))
    data: dict[str, Secret] = {}
    for _, values in ordered:
        for key, value in values.items():
            data.setdefault(key, value)
    return Fetched(data=data, kind=kind, refresh=refresh, fetched_at=fetched_at,
                   parts=ordered)


def to_secrets(data: Mapping[str, Any]) -> dict[str, Secret]:
    """Wrap every value; non-strings are JSON-encoded (documented choice)."""
    out: dict[str, Secret] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[str(key)] = Secret(value)
        else:
            out[str(key)] = Secret(json.dumps(value, separators=(",", ":"), sort_keys=True))
    return out
