"""The Jinja2 sandbox templates run in: its functions, filters, and errors without values.

Functions (every read goes through the generation, so a path is read once per generation
and the username and password of one database credential come from one lease):

- ``secret(path)``: the keys of a Vault path, as ``.key`` or ``['key']``;
  ``secret('kv/app/db?version=3')`` pins a version.
- ``consul(key)``: the value of a Consul key.
- ``env(name, default)``: a variable of the app's environment (as the app will see it,
  references resolved, bootstrap credentials such as ``VAULT_TOKEN`` left out); a missing
  variable without a default is an error.
- ``file(path)``: a regular file's text, only inside allowed folders (the template's own
  folder, the config file's folder when there is one, and ``template_allowed_dirs``);
  never under ``/proc``, ``/sys`` or ``/dev``. A relative path is taken from the
  template's folder.

Filters: ``tojson``, ``b64encode``, ``b64decode``, ``quote`` (POSIX shell quoting).

Errors name the template and line and never quote a secret: Jinja's own messages can
(``'dict object' has no attribute '<a value used as a key>'``), so every message is
scrubbed of every value the template was handed before it is raised.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shlex
import stat
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from entrypoint.errors import EntrypointError, TemplateError
from entrypoint.resolve import Generation
from entrypoint.secret import REDACTED

_VERSION = re.compile(r"\?version=(\d+)\Z")
_QUOTED_NAME = re.compile(r"(has no (?:attribute|element|key) )'([^']*)'")
MIN_SCRUB = 3  # shorter values would scrub ordinary letters out of a message
NEVER_READ = (Path("/proc"), Path("/sys"), Path("/dev"))


class SecretData(dict[str, str]):
    """The keys of one path, for templates: ``s.password`` and ``s['password']`` both work."""

    def __init__(self, label: str, data: Mapping[str, str]) -> None:
        super().__init__(data)
        # Underscored: the sandbox never shows it, so a key named "label" stays reachable.
        self._label = label


class _Undefined(StrictUndefined):
    """A missing key names the path and the keys present (names only, never values)."""

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if not self._undefined_hint and isinstance(obj, SecretData):
            names = ", ".join(sorted(k for k in obj if k)) or "none"
            return (f"{obj._label} has no key {self._undefined_name!r} "
                    f"(keys present: {names})")
        return str(super()._undefined_message)


@dataclass(frozen=True)
class Located:
    """Where a template came from, to name it in errors as ``file:line``."""

    label: str          # "templates/db.yml.j2" or "app.toml:4: contents of [[template]] for …"
    is_file: bool       # False for inline ``contents``
    folder: Path        # relative file() paths start here

    def at(self, line: int | None) -> str:
        if line is None:
            return self.label
        return f"{self.label}:{line}" if self.is_file else f"{self.label}, line {line}"


@dataclass
class Scope:
    """What one template may read, and everything it was handed (to scrub from errors)."""

    generation: Generation
    environ: Mapping[str, str]
    allowed: tuple[Path, ...]
    handed: set[str] = field(default_factory=set)

    def _hand(self, value: str) -> str:
        self.handed.add(value)
        return value

    def secret(self, path: str) -> SecretData:
        if not isinstance(path, str) or not path.strip("/"):
            raise TemplateError("secret() expects a path such as 'kv/app/db'")
        version: int | None = None
        match = _VERSION.search(path)
        if match:
            version = int(match.group(1))
            path = path[: match.start()]
            if version < 1:
                raise TemplateError("secret(): ?version= counts from 1")
        if "#" in path or "?" in path:
            raise TemplateError("secret() takes a path and an optional ?version=N; pick a "
                                "key with .key or ['key']",
                                hint="expected secret('kv/app/db').password")
        clean = path.strip("/")
        fetched = self.generation.get(("vault", clean, version))
        data = fetched.plain()
        for value in data.values():
            self._hand(value)
        label = f"secret {clean}" + (f"?version={version}" if version else "")
        return SecretData(label, data)

    def consul(self, key: str) -> str:
        if not isinstance(key, str) or not key.strip("/"):
            raise TemplateError("consul() expects a key such as 'config/app/feature_x'")
        value = self.generation.get(("consul", key.strip("/"), None)).value("")
        if value is None:
            raise TemplateError(f"consul key {key.strip('/')} has no value")
        return self._hand(value.reveal())

    def env(self, name: str, default: str | None = None) -> str:
        value = self.environ.get(name)
        if value is None:
            if default is None:
                raise TemplateError(f"env({name!r}): variable {name} is not set",
                                    hint="give a default: env('NAME', 'value')")
            return str(default)
        return self._hand(value)

    def file(self, path: str, folder: Path) -> str:
        if not isinstance(path, str) or not path:
            raise TemplateError("file() expects a path such as 'ca.pem'")
        target = Path(os.path.realpath(folder / path))
        if any(target == top or top in target.parents for top in NEVER_READ):
            # /proc/self/environ holds the entrypoint's own VAULT_TOKEN; /dev/zero never ends.
            raise TemplateError(f"file({path!r}): {target} is under /proc, /sys or /dev, "
                                "which templates never read")
        if not any(target == root or root in target.parents for root in self.allowed):
            roots = ", ".join(str(r) for r in self.allowed) or "none"
            raise TemplateError(f"file({path!r}): {target} is outside the allowed folders",
                                hint=f"allowed: {roots}; add one with template_allowed_dirs")
        with contextlib.suppress(OSError):  # a missing file: the file source says so
            if not stat.S_ISREG(os.stat(target).st_mode):
                raise TemplateError(f"file({path!r}): {target} is not a regular file")
        value = self.generation.get(("file", str(target), None)).value("")
        if value is None:  # the file source stores the whole text under ""
            raise TemplateError(f"file({path!r}): {target} gave no text")
        return self._hand(value.reveal())

    def functions(self, folder: Path) -> dict[str, Callable[..., Any]]:
        def file(path: str) -> str:
            return self.file(path, folder)

        return {"secret": self.secret, "consul": self.consul, "env": self.env, "file": file}

    def scrub(self, text: str, source: str) -> str:
        """Remove every handed-out value from ``text`` (unless the template's own text
        holds it), and quoted names the template never wrote (a key looked up by a
        computed value is that value)."""
        known = set(self.handed) | {v.reveal() for f in self.generation.fetched.values()
                                    for v in f.data.values()}
        for value in sorted(known, key=len, reverse=True):
            # A value the template itself spells out (a username "app" in "kv/app/db") is
            # no secret from its reader, and scrubbing it would garble paths in messages.
            if len(value) >= MIN_SCRUB and value in text and value not in source:
                text = text.replace(value, REDACTED)

        def keep_if_written(match: re.Match[str]) -> str:
            name = match.group(2)
            written = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", source) is not None
            return match.group(0) if written else f"{match.group(1)}'{REDACTED}'"

        return _QUOTED_NAME.sub(keep_if_written, text)


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        # The codec's own message quotes the offending bytes: say what, not which.
        raise TemplateError("b64decode: the value is not base64 of UTF-8 text") from None


def _tojson(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False)
    except (TypeError, ValueError):
        raise TemplateError(f"tojson: a {type(value).__name__} cannot be written as "
                            "JSON") from None


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


def make_environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=_Undefined, autoescape=False,
                               keep_trailing_newline=True)
    env.filters.update({"tojson": _tojson, "b64encode": _b64encode,
                        "b64decode": _b64decode, "quote": _quote})
    return env


def compile_template(env: SandboxedEnvironment, source: str, where: Located) -> Template:
    """Parse ``source``; a syntax error is a :class:`TemplateError` at ``file:line``."""
    try:
        code = env.compile(source, name=where.label, filename=where.label)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where.at(exc.lineno)}: {exc.message}") from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render(template: Template, source: str, where: Located, scope: Scope) -> str:
    """Render with the scope's functions; any failure becomes an error at ``file:line``."""
    try:
        return template.render(scope.functions(where.folder))
    except Exception as exc:
        raise _located(exc, source, where, scope) from None


def _line_of(exc: BaseException, label: str) -> int | None:
    """Jinja rewrites tracebacks so a template frame carries the template's own line."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == label:
            line = frame.lineno
    return line


def _located(exc: Exception, source: str, where: Located, scope: Scope) -> EntrypointError:
    line = _line_of(exc, where.label)
    if isinstance(exc, TemplateSyntaxError):
        line = exc.lineno
    here = where.at(line)
    if isinstance(exc, EntrypointError):
        # Keep the class (and exit status): an unreachable server stays retryable.
        hint = scope.scrub(exc.hint, source) if exc.hint else None
        return _copy_error(exc, f"{here}: {scope.scrub(exc.message, source)}", hint)
    if isinstance(exc, SecurityError):
        return TemplateError(f"{here}: refused by the sandbox: {scope.scrub(str(exc), source)}")
    if isinstance(exc, UndefinedError):
        return TemplateError(f"{here}: {scope.scrub(str(exc), source)}")
    kind = exc.__class__.__name__
    return TemplateError(f"{here}: {kind}: {scope.scrub(str(exc), source)}")


def _copy_error(exc: EntrypointError, message: str, hint: str | None) -> EntrypointError:
    new = exc.__class__.__new__(exc.__class__)
    new.__dict__.update(exc.__dict__)
    new.message = message
    new.hint = hint
    new.args = (message,)
    return new


def allowed_folders(implicit: Iterable[Path], explicit: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Resolved, deduplicated folders for ``file()``.

    ``implicit`` are the template's and the config file's folders: one of them that is
    ``/`` is left out, since it would open every file on the system to a template that
    merely sits there. ``explicit`` (``template_allowed_dirs``) are kept as given.
    """
    out: list[Path] = []
    for folder, given in [*((f, False) for f in implicit), *((f, True) for f in explicit)]:
        resolved = Path(os.path.realpath(folder))
        if resolved not in out and (given or resolved != Path("/")):
            out.append(resolved)
    return tuple(out)
