"""The Jinja2 sandbox templates run in: its functions, filters, and errors without values.

Functions (every read goes through the generation, so a path is read once per generation
and the username and password of one database credential come from one lease):

- ``secret(path)``: the keys of a Vault path, as ``.key`` or ``['key']``;
  ``secret('kv/app/db?version=3')`` pins a version. With parameters it is a write:
  ``secret('pki/issue/web', common_name='app.internal', ttl='72h')`` issues (once per
  generation per path and parameters, so cert, key and chain come from one answer).
- ``consul(key)``: the value of a Consul key.
- ``env(name, default)``: a variable of the app's environment (as the app will see it,
  references resolved, bootstrap credentials such as ``VAULT_TOKEN`` left out); a missing
  variable without a default is an error.
- ``file(path)``: a regular file's text, only inside allowed folders (the template's own
  folder, the config file's folder when there is one, and ``template_allowed_dirs``);
  never under ``/proc``, ``/sys`` or ``/dev``. A relative path is taken from the
  template's folder.

Filters: ``tojson``, ``b64encode``, ``b64decode``, ``quote`` (POSIX shell quoting).

Errors name the template and line and never quote a secret: Jinja's and Python's own
messages can, so they are built from safe parts (:mod:`entrypoint.render.errors`); a
function given an argument the template did not spell out (computed from a value) names
neither it nor anything built from it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing, object_type_repr

from entrypoint.errors import EntrypointError, TemplateError
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolve import Generation
from entrypoint.render import filters
from entrypoint.render.errors import (
    COMPUTED,
    Missing,
    Unsafe,
    copy_error,
    describe,
    line_of,
    written,
)
from entrypoint.render.limits import (
    Deadline,
    TimeUp,
    TooLarge,
    check_call,
    check_repeat,
    check_widths,
    collect,
    too_large,
    too_slow,
)

_VERSION = re.compile(r"\?version=(\d+)\Z")
_T = TypeVar("_T")
NEVER_READ = (Path("/proc"), Path("/sys"), Path("/dev"))


def within(path: Path, folders: Iterable[Path]) -> bool:
    """``path`` is one of ``folders`` or below one (by its text: resolve it first)."""
    return any(path == folder or folder in path.parents for folder in folders)


class SecretData(dict[str, str]):
    """The keys of one path, for templates: ``s.password`` and ``s['password']`` both work."""

    def __init__(self, label: str, data: Mapping[str, str]) -> None:
        super().__init__(data)
        # Underscored: the sandbox never shows it, so a key named "label" stays reachable.
        self._label = label


class _Undefined(StrictUndefined):
    """Raises :class:`~entrypoint.render.errors.Missing` (or ``Unsafe``) with the parts
    of the message kept apart, so that a name computed from a value is never shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kind = self._undefined_exception
        # Jinja raises self._undefined_exception(message): build ours from the parts.
        self._undefined_exception = self._structured  # type: ignore[assignment]

    def _structured(self, message: str) -> Exception:
        obj, name = self._undefined_obj, self._undefined_name
        if issubclass(self._kind, SecurityError):
            return Unsafe(name, type(obj).__name__)
        if self._undefined_hint:
            return UndefinedError("an undefined value")  # shown as such, hint left out
        if obj is missing:
            return Missing(None, name, None)
        if isinstance(obj, SecretData):
            return Missing(obj._label, name, sorted(k for k in obj if k))
        return Missing(object_type_repr(obj), name, None)


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
    source: str = ""  # the template's text: what it spells out may be shown in errors
    timeout: float = 0.0  # template_timeout; 0: no deadline
    max_bytes: int = 16 * 1024 * 1024  # template_max_bytes
    handed: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)  # arguments given to the functions
    deadline: Deadline | None = None  # while rendering

    def _hand(self, value: str) -> str:
        self.handed.add(value)
        return value

    def _call(self, fn: str, arg: object, call: Callable[[], _T]) -> _T:
        """Run ``call``; if it fails and the template did not spell ``arg`` out (a path
        computed from a value is that value, transformed), the message names neither the
        argument nor anything built from it: only the function and the error's kind."""
        if isinstance(arg, str):
            self.asked.add(arg)
        try:
            if self.deadline is None:
                return call()
            with self.deadline.paused():  # a fetch has its own timeouts
                return call()
        except EntrypointError as exc:
            if written(arg, self.source):
                raise
            from entrypoint.describe import error_kind

            raise copy_error(exc, f"{fn}({COMPUTED!r}): {error_kind(exc)}", None) from None

    def secret(self, path: str, **params: Any) -> SecretData:
        return self._call("secret", path, lambda: self._secret(path, params))

    def _secret(self, path: str, params: Mapping[str, Any] | None = None) -> SecretData:
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
        written_params = _params(params or {}, version)
        fetched = self.generation.get(SourceKey("vault", clean, version, written_params))
        data = fetched.plain()
        for value in data.values():
            self._hand(value)
        label = f"secret {clean}" if written(path, self.source) else f"secret {COMPUTED}"
        return SecretData(label + (f"?version={version}" if version else ""), data)

    def consul(self, key: str) -> str:
        return self._call("consul", key, lambda: self._consul(key))

    def _consul(self, key: str) -> str:
        if not isinstance(key, str) or not key.strip("/"):
            raise TemplateError("consul() expects a key such as 'config/app/feature_x'")
        value = self.generation.get(SourceKey("consul", key.strip("/"))).value("")
        if value is None:
            raise TemplateError(f"consul key {key.strip('/')} has no value")
        return self._hand(value.reveal())

    def decrypt(self, key: str, ciphertext: str) -> str:
        """``decrypt('KEY', 'vault:v1:...')``: the value of ``transit:KEY#CIPHERTEXT``."""
        return self._call("decrypt", key, lambda: self._decrypt(key, ciphertext))

    def _decrypt(self, key: str, ciphertext: str) -> str:
        if not isinstance(key, str) or not key.strip("/") or not isinstance(ciphertext, str) \
                or not ciphertext.startswith("vault:v"):
            raise TemplateError("decrypt() expects a transit key and a ciphertext",
                                hint="expected decrypt('app', 'vault:v1:...')")
        path = f"{key.strip('/')}#{ciphertext}"
        value = self.generation.get(SourceKey("transit", path)).value(ciphertext)
        if value is None:
            raise TemplateError(f"decrypt({key!r}, ...): no plaintext")
        return self._hand(value.reveal())

    def env(self, name: str, default: str | None = None) -> str:
        return self._call("env", name, lambda: self._env(name, default))

    def _env(self, name: str, default: str | None) -> str:
        value = self.environ.get(name)
        if value is None:
            if default is None:
                raise TemplateError(f"env({name!r}): variable {name} is not set",
                                    hint="give a default: env('NAME', 'value')")
            return str(default)
        return self._hand(value)

    def file(self, path: str, folder: Path) -> str:
        return self._call("file", path, lambda: self._file(path, folder))

    def _file(self, path: str, folder: Path) -> str:
        if not isinstance(path, str) or not path:
            raise TemplateError("file() expects a path such as 'ca.pem'")
        # Checked resolved, read as named: the read walks the path itself and follows a
        # link only in a folder that only root can write (a link root made, the check
        # having followed it too). Reading the resolved path read wherever a link the app
        # planted in a folder it can write pointed, within the allowed folders (a root-only
        # file next to the template): found by racing a render against an app swapping a
        # link (tests/e2e/test_write_attacks.py).
        named = Path(os.path.abspath(folder / path))
        try:
            target = Path(os.path.realpath(named))
            named_folder = Path(os.path.realpath(named.parent))
        except OSError:  # a link swapped for a file between realpath's lstat and readlink
            raise TemplateError(f"file({path!r}): {named} changed while it was checked; "
                                "refusing it") from None
        if within(target, NEVER_READ) or within(named, NEVER_READ):
            # /proc/self/environ holds the entrypoint's own VAULT_TOKEN; /dev/zero never ends.
            raise TemplateError(f"file({path!r}): {target} is under /proc, /sys or /dev, "
                                "which templates never read")
        # The named file's folder too (resolved, as the allowed folders are): ".." after a
        # link root made must not lead the lexical read out of them.
        for checked in (target, named_folder / named.name):
            if not within(checked, self.allowed):
                roots = ", ".join(str(r) for r in self.allowed) or "none"
                raise TemplateError(f"file({path!r}): {checked} is outside the allowed "
                                    "folders", hint=f"allowed: {roots}; add one with "
                                                    "template_allowed_dirs")
        with contextlib.suppress(OSError):  # a missing file: the file source says so
            if not stat.S_ISREG(os.stat(target).st_mode):
                raise TemplateError(f"file({path!r}): {target} is not a regular file")
        # Read and watched by the path as written: where it leads now is only checked.
        # A Kubernetes volume's file leads into a timestamped folder the next update
        # removes; keyed by that folder, its later updates were never seen.
        value = self.generation.get(SourceKey("file", str(named))).value("")
        if value is None:  # the file source stores the whole text under ""
            raise TemplateError(f"file({path!r}): {target} gave no text")
        return self._hand(value.reveal())

    def functions(self, folder: Path) -> dict[str, Callable[..., Any]]:
        def file(path: str) -> str:
            return self.file(path, folder)

        return {"secret": self.secret, "consul": self.consul, "env": self.env, "file": file,
                "decrypt": self.decrypt}

    def values(self) -> set[str]:
        """Everything an error message must not show."""
        fetched = {v.reveal() for f in self.generation.fetched.values() for v in f.data.values()}
        return self.handed | self.asked | fetched


def _params(params: Mapping[str, Any], version: int | None) -> tuple[tuple[str, str], ...]:
    """secret()'s keyword arguments as a write's parameters: text, numbers, booleans."""
    if params and version is not None:
        raise TemplateError("secret(): ?version= reads a version; it cannot be combined with "
                            "parameters, which make a write")
    out: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            out.append((name, str(value)))
        else:
            raise TemplateError(f"secret(): parameter {name} must be text or a number, not "
                                f"a {type(value).__name__}")
    return tuple(sorted(out))


class _Environment(SandboxedEnvironment):
    """Checks what could make a huge string in one step (``*``, ``**``, ``%``, padding
    and format methods) against the size cap before it runs."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, max_bytes: int, **options: Any) -> None:
        super().__init__(**options)
        self.max_bytes = max_bytes

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_repeat(operator, left, right, self.max_bytes)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        check_call(__obj, args, __self.max_bytes)
        return super().call(__context, __obj, *args, **kwargs)

    def guard_filters(self) -> None:
        """Filters are called directly, not through :meth:`call`: wrap those that grow."""
        for name in ("center", "indent", "format"):
            self.filters[name] = _guarded_filter(name, self.filters[name], self.max_bytes)


def _guarded_filter(name: str, inner: Callable[..., Any], max_bytes: int) -> Callable[..., Any]:
    def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "format":  # value % args
            check_widths(value, max_bytes)
        else:  # center(width), indent(width): a width per line
            width = args[0] if args else kwargs.get("width", 0)
            size = width if isinstance(width, int) else len(str(width))
            if size * (str(value).count("\n") + 1) > max_bytes:
                raise TooLarge
        return inner(value, *args, **kwargs)

    return guarded


def make_environment(max_bytes: int = 16 * 1024 * 1024) -> SandboxedEnvironment:
    env = _Environment(max_bytes, undefined=_Undefined, autoescape=False,
                       keep_trailing_newline=True)
    env.filters.update(filters.ADDED)
    env.guard_filters()
    return env


def compile_template(env: SandboxedEnvironment, source: str, where: Located) -> Template:
    """Parse ``source``; a syntax error is a :class:`TemplateError` at ``file:line``."""
    try:
        code = env.compile(source, name=where.label, filename=where.label)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where.at(exc.lineno)}: {exc.message}") from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render(template: Template, source: str, where: Located, scope: Scope) -> str:
    """Render with the scope's functions, within its deadline and size cap; any failure
    becomes an error at ``file:line``."""
    try:
        if scope.timeout <= 0:
            return _generate(template, where, scope)
        with Deadline(scope.timeout, inside=_generate.__code__) as scope.deadline:
            return _generate(template, where, scope)
    except TimeUp as exc:
        raise too_slow(where.at(line_of(exc, where.label)), scope.timeout) from None
    except TooLarge as exc:
        raise too_large(where.at(line_of(exc, where.label)), scope.max_bytes) from None
    except Exception as exc:
        line = exc.lineno if isinstance(exc, TemplateSyntaxError) else None
        here = where.at(line or line_of(exc, where.label))
        raise describe(exc, here, source, scope.values()) from None
    finally:
        scope.deadline = None


def _generate(template: Template, where: Located, scope: Scope) -> str:
    """``Template.render``, but counting the text as it is produced."""
    context = template.new_context(scope.functions(where.folder))
    try:
        return collect(template.root_render_func(context), scope.max_bytes)
    except (Exception, TimeUp):
        # As Template.render does: the traceback is rewritten to carry template lines.
        template.environment.handle_exception()


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
