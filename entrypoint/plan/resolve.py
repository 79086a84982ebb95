"""From the environment's references to resolved values, reading every path once.

A *generation* is one consistent set of fetched secrets: every distinct
``(scheme, path, version)`` is read once, so the username and password of one database
credential always come from the same lease.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from entrypoint.config.bootstrap import is_bootstrap_variable
from entrypoint.errors import ConfigError, EntrypointError, SecretNotFound
from entrypoint.plan import refs
from entrypoint.plan.keys import SourceKey, bulk_key
from entrypoint.plan.refs import Part, Ref
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched
from entrypoint.sources.registry import Sources


@dataclass(frozen=True)
class EnvPlan:
    """The environment split into values to resolve and values to pass through."""

    references: dict[str, list[Part]] = field(default_factory=dict)
    passthrough: dict[str, str] = field(default_factory=dict)

    def source_keys(self) -> set[SourceKey]:
        return {r.source_key for parts in self.references.values() for r in refs.references(parts)}


def plan_environment(environ: Mapping[str, str], keep: Iterable[str] = ()) -> EnvPlan:
    """Parse every value; bootstrap variables are dropped unless named in ``keep``."""
    kept = set(keep)
    plan = EnvPlan()
    for name, value in environ.items():
        if is_bootstrap_variable(name) and name not in kept:
            continue
        parts = refs.parse(value, where=f"variable {name}")
        if refs.references(parts):
            plan.references[name] = parts
        else:
            # A plain value parses to itself; an escaped one loses its escape.
            plan.passthrough[name] = "".join(p for p in parts if isinstance(p, str))
    return plan


class Generation:
    """A cache of fetches for one generation; safe to use from several threads."""

    def __init__(self, sources: Sources, concurrency: int = 8,
                 seed: Mapping[SourceKey, Fetched] | None = None) -> None:
        self.sources = sources
        self.concurrency = concurrency
        # A successor generation starts from what has not changed: no re-read, no new lease.
        self.fetched: dict[SourceKey, Fetched] = dict(seed or {})
        self.seeded = frozenset(self.fetched)
        # What this generation's outputs read: a seeded key no output asks for any more
        # (a template edited to read another secret) is carried, but no longer watched.
        self.used: set[SourceKey] = set()
        self._locks: dict[SourceKey, threading.Lock] = {}
        self._guard = threading.Lock()
        # ``entrypoint check`` without --issue: a write is validated, not made.
        self.dry_issue = False
        # Each path whose last read failed (missing, refused, unreadable), by its key: the
        # error says what failed, and the caller, who knows which variables or templates
        # asked for it, names them (resolve_environment, ``entrypoint check``).
        self.errors: dict[SourceKey, EntrypointError] = {}

    @property
    def missing(self) -> dict[SourceKey, SecretNotFound]:
        """The paths found missing, of :attr:`errors`."""
        with self._guard:
            return {k: e for k, e in self.errors.items() if isinstance(e, SecretNotFound)}

    def get(self, key: SourceKey) -> Fetched:
        with self._guard:
            self.used.add(key)
            if key in self.fetched:
                return self.fetched[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.fetched:
                try:
                    fetched = self._read(key)
                except EntrypointError as exc:
                    with self._guard:
                        self.errors[key] = exc
                    raise
                with self._guard:
                    self.fetched[key] = fetched
                    self.errors.pop(key, None)  # failed once, then read
            return self.fetched[key]

    def _read(self, key: SourceKey) -> Fetched:
        scheme, path, version = key.scheme, key.path, key.version
        try:
            source = self.sources.get(scheme)
            if not key.params:
                fetched = source.fetch(path, version)
            elif self.dry_issue:
                fetched = source.check_issue(path, key.params)[1]
            else:  # a write (?write&..., secret(path, name=value)): issue once
                fetched = source.issue(path, key.params)
        except RecursionError:
            # A JSON (or TOML) answer nested thousands deep: the parser gives up.
            raise ConfigError(f"{scheme}:{path}: the value is nested too deeply to be read",
                              hint="expected an object of key/value pairs, nested at most "
                                   "a few hundred levels") from None
        if not fetched.fetched_at:
            fetched = dataclasses.replace(fetched, fetched_at=time.monotonic())
        return fetched

    def prefetch(self, keys: Iterable[SourceKey]) -> None:
        """Fetch ``keys`` with bounded concurrency; the first error wins."""
        todo = sorted(set(keys) - set(self.fetched), key=SourceKey.sort_key)
        if len(todo) <= 1 or self.concurrency <= 1:
            for key in todo:
                self.get(key)
            return
        # Build each source here, once, so that lazily created clients do not race.
        for scheme in {k.scheme for k in todo}:
            self.sources.get(scheme)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)),
                                thread_name_prefix="fetch") as pool:
            for future in [pool.submit(self.get, key) for key in todo]:
                future.result()

    def value(self, ref: Ref, where: str) -> Secret:
        try:
            fetched = self.get(ref.source_key)
        except SecretNotFound as exc:
            # The source knows the path; only the caller knows which variable asked.
            raise SecretNotFound(f"{where}: {ref.format(hide_params=True)}: {exc.message}",
                                 hint=exc.hint) from None
        key = ref.key if ref.key is not None else ""
        secret = fetched.value(key)
        if secret is None:
            source = self.sources.get(ref.scheme)
            label = f"{ref.scheme}:{ref.path}#{key}" if key else ref.format()
            hint = None
            if fetched.data:
                names = ", ".join(sorted(k for k in fetched.data if k)) or "none"
                hint = f"keys present: {names}"
            raise SecretNotFound(f"{where}: key {label} not found in {source.describe(ref.path)}",
                                 hint=hint)
        return secret


# execve() refuses one "NAME=value" longer than this (MAX_ARG_STRLEN: 32 pages of 4 KiB).
MAX_ENV_STRING = 32 * 4096


def check_env_value(name: str, value: Secret, origin: str = "") -> None:
    """Refuse a value no environment can carry, naming the variable (never the value).

    Checked when a generation is built, so that a bad rotated value is refused while the
    app still runs on the old one: found by ``execve`` instead, it would come to light
    only after the app had been stopped for its restart.
    """
    text = value.reveal()
    where = f"variable {name}" + (f" ({origin})" if origin else "")
    if "\0" in text:
        raise ConfigError(f"{where}: the value holds a NUL byte, which no environment "
                          "variable can carry", hint="give it to the app in a file template")
    try:
        size = len(name) + 1 + len(text.encode("utf-8", "surrogateescape")) + 1
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: the value holds text that cannot be encoded "
                          "(a lone surrogate)", hint="expected UTF-8 text") from None
    if size > MAX_ENV_STRING:
        raise ConfigError(f"{where}: the value is {size} bytes; an environment variable "
                          f"holds at most {MAX_ENV_STRING}",
                          hint="give it to the app in a file template")


def resolve_parts(parts: list[Part], generation: Generation, where: str) -> Secret:
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return generation.value(parts[0], where)
    pieces = [generation.value(p, where).reveal() if isinstance(p, Ref) else p for p in parts]
    return Secret("".join(pieces))


# A missing path used by more variables than this names the first and counts the others.
NAMED_USERS = 3


def named_users(names: Sequence[str], noun: str = "variable") -> str:
    """``variable A``, ``variables A, B, C``, or ``variable A and 3 more``: how messages
    and ``entrypoint check`` name the users of a path."""
    if len(names) == 1:
        return f"{noun} {names[0]}"
    if len(names) <= NAMED_USERS:
        return f"{noun}s {', '.join(names)}"
    return f"{noun} {names[0]} and {len(names) - 1} more"


def named_after_users(plan: EnvPlan, key: SourceKey, exc: SecretNotFound) -> SecretNotFound:
    """``exc`` (a path of ``key`` not found) prefixed with the variables that use the
    path, as :meth:`Generation.value` names one: ``variable DB_PASSWORD:
    vault:secret/app/db#password: ...``; several: ``variables A, B: vault:secret/app/db:
    ...``, or ``variable A and N more: ...``."""
    users = sorted(name for name, parts in plan.references.items()
                   if any(r.source_key == key for r in refs.references(parts)))
    if not users:
        return exc
    if len(users) == 1:
        first = next(r for r in refs.references(plan.references[users[0]])
                     if r.source_key == key)
        where = f"variable {users[0]}: {first.format(hide_params=True)}"
    else:
        where = f"{named_users(users)}: {key.ref}"
    return SecretNotFound(f"{where}: {exc.message}", hint=exc.hint)


def resolve_environment(plan: EnvPlan, generation: Generation) -> dict[str, Secret]:
    try:
        # Every path at once, in parallel: a missing one fails here, before the code that
        # names the variable (Generation.value), so the users of the path are named here.
        generation.prefetch(plan.source_keys())
    except SecretNotFound as exc:
        key = next((k for k, e in generation.missing.items() if e is exc), None)
        if key is None:
            raise
        raise named_after_users(plan, key, exc) from exc
    out: dict[str, Secret] = {}
    for name, parts in plan.references.items():
        out[name] = resolve_parts(parts, generation, f"variable {name}")
        check_env_value(name, out[name], ", ".join(r.format() for r in refs.references(parts)))
    return out


_INVALID = re.compile(r"[^A-Za-z0-9_]")


def export_name(key: str, prefix: str, upcase: bool, sanitize: bool) -> str:
    """The variable name of a bulk-exported key (documented in docs/configuration.md)."""
    name = prefix + key
    if sanitize:
        name = _INVALID.sub("_", name)
        if name[:1].isdigit():
            name = "_" + name
    return name.upper() if upcase else name


def bulk_export(paths: Iterable[str], generation: Generation, *, prefix: str, upcase: bool,
                sanitize: bool) -> dict[str, Secret]:
    """Every key under each path becomes a variable; two keys landing on one name is an
    error. A path ending in ``/`` is a folder: every secret under it, in path order."""
    keys = [bulk_key(p) for p in paths]
    generation.prefetch(keys)
    out: dict[str, Secret] = {}
    origin: dict[str, str] = {}
    for key in keys:
        fetched = generation.get(key)
        for data_key, value, path in _bulk_items(key, fetched):
            name = export_name(data_key, prefix, upcase, sanitize)
            here = f"{path}#{data_key}"
            if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"bulk export: key {here} gives {name!r}, not a valid "
                                  "variable name", hint="turn on secrets_sanitize")
            if name in origin:
                raise ConfigError(f"bulk export: {here} and {origin[name]} both become "
                                  f"variable {name}",
                                  hint="rename one key, or set secrets_prefix")
            check_env_value(name, value, f"bulk export of {here}")
            origin[name] = here
            out[name] = value
    return out


def _bulk_items(key: SourceKey, fetched: Fetched) -> Iterator[tuple[str, Secret, str]]:
    """(key, value, the secret's path) of one bulk path; a folder's secret by secret."""
    for path, data in fetched.parts or ((key.path, fetched.data),):
        for data_key, value in data.items():
            yield data_key, value, path
