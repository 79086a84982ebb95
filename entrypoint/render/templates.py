"""Templates: env templates into the app's environment, file templates to their destinations.

Render everything, then act once (consul-template's ``Run``): every template of a
generation is rendered to memory first, so a bad template or a missing key changes
nothing on disk. Then each destination's bytes are compared with what is already there;
only those that differ are staged (temp file beside it, fsync, mode, owner), and only when
all are staged are they moved into place. The result says which destinations changed,
with their ``on_change``, so the caller acts once.

How the rotation engine calls it for a new generation::

    resolution = runtime.resolve(generation)           # references and bulk export
    result = render_all(config, runtime, resolution)   # env templates set, files written
    new_env = resolution.child_env()                   # now includes env templates
    plan = decide(old_env, new_env, result.actions, reasons)

or, holding on to actions owed after a partial write, ``Renderer(config, runtime)``
as the engine's ``render`` callback: ``actions = renderer(resolution)``.

``render_all`` is ``render_env`` + ``render_files`` + ``write_changed``; a caller that
wants to look before writing uses the three pieces. :func:`template_sources` lists the
files to watch (an edit to one is a reason to render again).

Errors: :class:`TemplateError` (78) names ``file:line``; :class:`RenderError` (73) names
the destination. Neither ever contains a rendered value.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jinja2.sandbox import SandboxedEnvironment

from entrypoint.config.model import Config, EnvTemplateSpec, OnChange, TemplateSpec
from entrypoint.describe import os_reason
from entrypoint.errors import ConfigError, RenderError, TemplateError
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.plan.resolve import check_env_value
from entrypoint.render import atomic, safepath, sandbox
from entrypoint.render.outcome import Outcome
from entrypoint.secret import Secret


@dataclass(frozen=True)
class Rendered:
    """One file template rendered to bytes, not yet written."""

    spec: TemplateSpec
    content: bytes = field(repr=False)

    @property
    def destination(self) -> Path:
        return self.spec.destination


@dataclass(frozen=True)
class FileChange:
    """A destination whose bytes changed, and what the app wants done about it."""

    destination: Path
    on_change: OnChange


@dataclass(frozen=True)
class RenderResult:
    env: tuple[str, ...] = ()                  # variables set by env templates
    changed: tuple[FileChange, ...] = ()       # destinations written (content differed)
    unchanged: tuple[Path, ...] = ()           # destinations left alone

    @property
    def actions(self) -> list[OnChange]:
        """The ``on_change`` of each changed destination, in config order."""
        return [change.on_change for change in self.changed]


class PartialRenderError(RenderError):
    """Moving a staged file into place failed after others had been moved.

    ``changed`` lists those already in place, so that the caller still acts on them: a
    retry would find them unchanged on disk and not report them again.
    """

    def __init__(self, message: str, changed: tuple[FileChange, ...]) -> None:
        super().__init__(message)
        self.changed = changed


def render_all(config: Config, runtime: Runtime, resolution: Resolution, *,
               allowed: Iterable[Path] = ()) -> RenderResult:
    """Render every env and file template of ``resolution``'s generation; write what changed.

    ``allowed`` adds folders that ``file()`` may read.
    """
    before = set(resolution.generation.fetched)
    names = render_env(config, runtime, resolution, allowed=allowed)
    rendered = render_files(config, runtime, resolution, allowed=allowed)
    _log_fetches(runtime.log, resolution, before)
    written = write_changed(rendered, runtime.log)
    return RenderResult(env=tuple(names), changed=written.changed, unchanged=written.unchanged)


class Renderer:
    """:func:`render_all` for a long-lived caller such as the rotation engine.

    Called with each new resolution, it returns the ``on_change`` actions to take, once
    each, as an :class:`Outcome` that also lists the file templates that failed (kept at
    their last good file). If moving files into place fails halfway
    (:class:`PartialRenderError`), the actions of the files already in place are
    remembered and returned by the next successful call, since those files will then
    look unchanged on disk.
    """

    def __init__(self, config: Config, runtime: Runtime, *, allowed: Iterable[Path] = ()) -> None:
        self.config = config
        self.runtime = runtime
        self.allowed = tuple(allowed)
        self.owed: list[FileChange] = []

    def __call__(self, resolution: Resolution) -> list[OnChange]:
        # Each file template on its own (render/outputs.py): one that fails keeps its
        # last good file, unless its error_on_refresh is fatal.
        from entrypoint.render.outputs import render_outputs

        try:
            result, failed = render_outputs(self.config, self.runtime, resolution,
                                            allowed=self.allowed)
        except PartialRenderError as exc:
            self.owed.extend(exc.changed)
            raise
        changes, self.owed = [*self.owed, *result.changed], []
        actions = Outcome(failed=failed)
        for change in changes:
            if change.on_change not in actions:
                actions.append(change.on_change)
        return actions


def render_env(config: Config, runtime: Runtime, resolution: Resolution, *,
               allowed: Iterable[Path] = ()) -> dict[str, Secret]:
    """Render each ``[[env_template]]`` into ``resolution.managed[name]``, in config order.

    ``env()`` in a later env template or a file template sees the earlier ones.
    """
    env = sandbox.make_environment(config.template_max_bytes)
    view = resolution.child_env()
    out: dict[str, Secret] = {}
    for spec in config.env_template:
        if spec.name in runtime.plan.references:
            raise ConfigError(f"{spec.origin}: variable {spec.name} is both a reference in "
                              "the environment and an [[env_template]]",
                              hint="remove one of them")
        where, source = _load(spec, config)
        scope = _scope(config, resolution, view, where, allowed, source)
        text = sandbox.render(sandbox.compile_template(env, source, where), source, where, scope)
        # A template file ends with a newline; a variable's value should not.
        value = Secret(text[:-1] if text.endswith("\n") else text)
        check_env_value(spec.name, value, f"[[env_template]] {where.label}")
        out[spec.name] = value
        resolution.managed[spec.name] = value
        view[spec.name] = value.reveal()
        runtime.log.debug("rendered env template %s", spec.name)
    return out


def render_files(config: Config, runtime: Runtime, resolution: Resolution, *,
                 allowed: Iterable[Path] = ()) -> list[Rendered]:
    """Render every file ``[[template]]`` to bytes; nothing is written."""
    env = sandbox.make_environment(config.template_max_bytes)
    view = resolution.child_env()
    out: list[Rendered] = []
    seen: dict[Path, str] = {}
    for spec in config.template:
        dest = spec.destination
        if dest in seen:
            raise ConfigError(f"{spec.origin}: two templates write {dest} "
                              f"({seen[dest]} and {spec.name})")
        seen[dest] = spec.name
        out.append(render_file(config, spec, env, view, resolution, allowed))
    return out


def render_file(config: Config, spec: TemplateSpec, env: SandboxedEnvironment,
                view: Mapping[str, str], resolution: Resolution,
                allowed: Iterable[Path]) -> Rendered:
    """One file ``[[template]]`` to bytes; nothing is written."""
    where, source = _load(spec, config)
    scope = _scope(config, resolution, view, where, allowed, source)
    text = sandbox.render(sandbox.compile_template(env, source, where), source, where, scope)
    try:
        content = text.encode("utf-8")
    except UnicodeEncodeError:
        # A variable holding bytes that are not UTF-8 (Python keeps them as surrogates).
        raise TemplateError(f"{where.label}: renders text that is not valid UTF-8 (a "
                            "value it uses holds bytes that are not UTF-8 text)",
                            hint="expected UTF-8 text in every value") from None
    return Rendered(spec, content)


@dataclass(frozen=True)
class Written:
    changed: tuple[FileChange, ...]
    unchanged: tuple[Path, ...]


def write_changed(rendered: list[Rendered], log: logging.Logger) -> Written:
    """Write the destinations whose bytes differ; all are staged before any is replaced."""
    changed: list[Rendered] = []
    unchanged: list[Path] = []
    owners: dict[Path, atomic.Owner] = {}
    for item in rendered:
        spec = item.spec
        owners[item.destination] = atomic.resolve_owner(
            spec.user, spec.group, f"{spec.origin}: template {item.destination}")
        fixed = atomic.existing(item.destination, item.content, spec.perms,
                                owners[item.destination])
        if fixed is None:
            changed.append(item)
            continue
        unchanged.append(item.destination)
        if fixed:
            log.info("template %s unchanged; mode or owner corrected", item.destination)
        else:
            log.debug("template %s unchanged", item.destination)
    staged: list[Path] = []
    try:
        for item in changed:
            staged.append(atomic.stage(item.destination, item.content, item.spec.perms,
                                       owners[item.destination]))
    except BaseException:
        atomic.discard(staged)
        raise
    done: list[FileChange] = []
    for index, (item, temp) in enumerate(zip(changed, staged, strict=True)):
        try:
            atomic.commit(temp, item.destination)
        except RenderError as exc:
            atomic.discard(staged[index + 1:])
            if not done:
                raise
            raise PartialRenderError(exc.message, tuple(done)) from None
        done.append(FileChange(item.destination, item.spec.on_change))
        log.info("rendered %s", item.destination,
                 extra={"bytes": len(item.content), "mode": f"{item.spec.perms:04o}"})
    return Written(tuple(done), tuple(unchanged))


def _log_fetches(log: logging.Logger, resolution: Resolution, before: set[SourceKey]) -> None:
    """Paths first read by a template, logged as :meth:`Runtime.resolve` logs its own."""
    fetched = resolution.generation.fetched
    for key in sorted(set(fetched) - before, key=lambda k: (k[0], k[1])):
        item = fetched[key]
        detail = f" v{item.version}" if item.version is not None else ""
        if item.lease_duration is not None:
            detail += f" lease ttl={item.lease_duration:g}s"
        log.info("fetched %s%s (for templates)", key.label, detail)


def template_sources(config: Config) -> list[Path]:
    """Template files (not inline contents) to watch: an edit means render again."""
    specs: list[TemplateSpec | EnvTemplateSpec] = [*config.template, *config.env_template]
    return [spec.source for spec in specs if spec.source is not None]


def config_folder(config: Config) -> Path:
    """The config file's folder (or the working folder when there is no config file)."""
    return config.config.resolve().parent if config.config is not None else Path.cwd()


def display(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load(spec: TemplateSpec | EnvTemplateSpec, config: Config) -> tuple[sandbox.Located, str]:
    if spec.source is None:
        target = (f"[[template]] for {spec.destination}" if isinstance(spec, TemplateSpec)
                  else f"[[env_template]] {spec.name}")
        where = sandbox.Located(f"{spec.origin}: contents of {target}", is_file=False,
                                folder=config_folder(config))
        return where, spec.contents or ""
    try:
        text = safepath.read_file(spec.source, check=_only_ours).decode("utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{spec.origin}: template {spec.source} does not exist") from None
    except safepath.UnsafePath as exc:
        if exc.errno in (errno.EINVAL, errno.ENOTDIR):  # a folder or FIFO: not about trust
            what = "is a folder" if spec.source.is_dir() else safepath.reason(exc)
            raise TemplateError(f"{spec.origin}: template {spec.source} cannot be read as "
                                f"UTF-8 text: {what}") from None
        raise TemplateError(f"{spec.origin}: template {spec.source} is refused: "
                            f"{safepath.reason(exc)}", hint=_OURS_HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{spec.origin}: template {spec.source} cannot be read as UTF-8 "
                            f"text: {os_reason(exc)}") from None
    # After the read: every folder on the way was checked, so no one else can have
    # swapped a link in since.
    where = sandbox.Located(display(spec.source), is_file=True,
                            folder=_own_folder(spec.source))
    return where, text


_OURS_HINT = ("a template and every folder on its path must be writable only by root or "
              "the entrypoint's user (chown root, chmod go-w), or be on a read-only mount")


def _only_ours(fd: int, path: Path) -> None:
    """Refuse a template the app could rewrite (or swap for a link to anything root can
    read): a file, or a folder on its path, another user can write; and anything under
    /proc, /sys or /dev (``/proc/1/environ`` holds the entrypoint's ``VAULT_TOKEN``).
    Strict on purpose: ``render`` and sidecar mode do not know which uid the app that
    reads their output runs as (another container's); a developer's bind mount is
    mounted read-only instead (docs/templates.md)."""
    if sandbox.within(path, sandbox.NEVER_READ):
        raise safepath.UnsafePath(errno.EACCES, f"{path} is under /proc, /sys or /dev, "
                                  "which templates never read")
    st = os.fstat(fd)
    if not (safepath.trusted(st, sticky=True) or safepath.read_only(fd)):
        raise safepath.UnsafePath(
            errno.EACCES, f"{path} can be written by a user other than root and the "
            f"entrypoint's (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")


def _own_folder(source: Path) -> Path:
    """The folder of the file ``source`` is, after its own links, the folders' left as
    they are: a template in a Kubernetes volume (``app.tmpl -> ..data/app.tmpl``) reads
    ``file('ca.pem')`` as ``VOL/..data/ca.pem``, which the next update leads elsewhere,
    not as the timestamped folder it then removes. The same file as the fully resolved
    folder gave."""
    path = source.absolute()
    for _ in range(40):  # the kernel's own limit on links in one lookup
        try:
            path = path.parent / os.readlink(path)
        except OSError:  # not a link (any more): its folder is the one
            break
    return path.parent


def _scope(config: Config, resolution: Resolution, view: Mapping[str, str],
           where: sandbox.Located, allowed: Iterable[Path], source: str) -> sandbox.Scope:
    # Not the working folder: without a config file, only the template's own folder (a
    # render started from / must not open the whole system to file()).
    implicit = [where.folder]
    if config.config is not None:
        implicit.append(config.config.resolve().parent)
    folders = sandbox.allowed_folders(implicit, allowed)
    return sandbox.Scope(resolution.generation, view, folders, source,
                         timeout=config.template_timeout, max_bytes=config.template_max_bytes)
