"""The resident path: resolve in the background, start the app, keep it on valid values."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.config.model import Config, OnChange
from entrypoint.errors import EntrypointError, SecretNotFound, UnavailableError
from entrypoint.plan.resolution import Resolution, Runtime

if TYPE_CHECKING:
    from entrypoint.ops.control import ControlServer
    from entrypoint.ops.service import Ops
    from entrypoint.plan.keys import SourceKey
    from entrypoint.process.events import Post
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.file_watch import FileWatch
    from entrypoint.rotation.source_watches import SourceWatches
    from entrypoint.sources.base import Fetched, Source


def render_outputs(config: Config, runtime: Runtime, resolution: Resolution) -> list[OnChange]:
    """Render env templates into the app's environment and file templates to disk.

    Returns the ``on_change`` of every file whose content changed.
    """
    if not (config.template or config.env_template):
        return []
    from entrypoint.render.templates import render_all

    result = render_all(config, runtime, resolution,
                        allowed=[Path(p) for p in config.template_allowed_dirs])
    return [spec.on_change for spec in result.changed]


def supervise(config: Config, env: Mapping[str, str], log: logging.Logger,
              command: list[str]) -> int:
    from entrypoint.ops.service import Ops
    from entrypoint.process.supervisor import ProcessOptions, Supervisor

    options = ProcessOptions(
        kill_timeout=config.kill_timeout, stop_signal=config.stop_signal,
        stop_delay=config.stop_delay,
        signal_group=config.signal_group, rewrite_signal=config.rewrite_signal,
        user=config.user, splay=config.splay, pass_fds=tuple(config.pass_fds),
        parent_death_signal=config.parent_death_signal or 0, no_new_privs=not config.new_privileges,
        success_exit_codes=frozenset(config.success_exit_code), debug=config.debug)
    # Built first so that its signal handlers are in place while secrets are resolved.
    supervisor = Supervisor(command, options, log)
    runtime = Runtime(config, env, log)
    ops = Ops(config, runtime, log, mode="supervise")
    resident = Resident(config, runtime, supervisor.post, log, ops)
    supervisor.on_child_started(resident.child_started)
    supervisor.on_stopping(ops.stopping)
    supervisor.on_shutdown(resident.shutdown)
    ops.start_metrics()
    return supervisor.run(resident.prepare)


class Resident:
    """What runs around the app: :meth:`prepare` (in the supervisor's worker thread),
    then the engine and the control socket, until :meth:`shutdown` (main thread).

    A SIGTERM while secrets are resolved makes the supervisor shut down without waiting
    for ``prepare``, which goes on in its thread: once :meth:`shutdown` has run, it must
    start nothing (no engine, no control socket) on the sources shutdown closed.
    """

    def __init__(self, config: Config, runtime: Runtime, post: Post,
                 log: logging.Logger, ops: Ops | None = None) -> None:
        self.config = config
        self.runtime = runtime
        self.post = post
        self.log = log
        if ops is None:
            from entrypoint.ops.service import Ops

            ops = Ops(config, runtime, log, mode="supervise")
        self.ops = ops
        ops.engine = lambda: self.rotation.engine if self.rotation is not None else None
        self.rotation: Rotation | None = None
        self.control: ControlServer | None = None
        self._lock = threading.Lock()  # shutdown against the end of prepare
        self._closing = False

    def prepare(self) -> Mapping[str, str]:
        resolution = self.runtime.resolve()
        self._still_open()
        marks = template_marks(self.config)
        render_outputs(self.config, self.runtime, resolution)
        with self._lock:
            self._still_open()
            self.rotation = start_rotation(self.config, self.runtime, resolution, self.post,
                                           self.log, env_matters=self.ops.mode != "sidecar",
                                           template_marks=marks)
            if self.config.control_socket:
                from entrypoint.ops.control import ControlServer

                try:
                    control = ControlServer(self.config.control_socket,
                                            self.rotation.engine.rotate_all, self.log,
                                            on_status=self.ops.status)
                except EntrypointError as exc:
                    # Not worth failing the app over: only the manual trigger is lost.
                    self.log.warning("'entrypoint rotate' will not reach this process: %s",
                                     exc)
                else:
                    control.start()
                    self.control = control
        return resolution.child_env()

    def _still_open(self) -> None:
        if self._closing:
            raise UnavailableError("shutting down before the app started")

    def child_started(self, pid: int, generation: int) -> None:
        if self.rotation is not None:
            self.rotation.engine.child_started(pid, generation)
        if pid:  # the first values are resolved and rendered, and the app runs on them
            self.ops.ready.set(True)

    def shutdown(self) -> None:
        with self._lock:  # waits for a prepare that is starting things; then none will
            self._closing = True
            control, rotation = self.control, self.rotation
        if control is not None:
            control.stop()
        self.ops.close()
        if rotation is not None:
            rotation.stop()
        self.runtime.close()


@dataclass
class Rotation:
    """The engine and everything that feeds it, stopped together."""

    engine: Engine
    files: FileWatch
    sources: SourceWatches  # the sources' own watches (Consul's blocking queries)

    def stop(self) -> None:
        self.files.stop()
        self.sources.stop()
        self.engine.stop()


def template_marks(config: Config) -> dict[str, int | None]:
    """The template files' contents before the first render, for :func:`start_rotation`
    to tell an edit made before their watch started."""
    if not (config.template or config.env_template):
        return {}
    from entrypoint.render.templates import template_sources
    from entrypoint.rotation.file_watch import content_mark

    # By the path as given: read again through it, a link swapped since is followed.
    return {str(path): content_mark(path) for path in template_sources(config)}


def start_rotation(config: Config, runtime: Runtime, resolution: Resolution,
                   post: Post, log: logging.Logger, *, env_matters: bool = True,
                   template_marks: Mapping[str, int | None] | None = None) -> Rotation:
    """Start the engine and the watchers that feed it. ``template_marks`` are the
    template files' contents as the first render read them (:func:`template_marks`)."""
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.file_watch import FileWatch
    from entrypoint.rotation.source_watches import SourceWatches

    render: Callable[[Resolution], list[OnChange]] = lambda _: []  # noqa: E731
    template_files: list[Path] = []
    if config.template or config.env_template:
        from entrypoint.render.templates import Renderer, template_sources

        render = Renderer(config, runtime,
                          allowed=[Path(p) for p in config.template_allowed_dirs])
        template_files = template_sources(config)
    engine = Engine(config, runtime, post, log, render=render)
    engine.env_matters = env_matters

    def notify(reason: str, keys: Iterable[SourceKey], rerender: bool) -> None:
        engine.notify(reason, keys, rerender=rerender)

    # A watched value is covered by its files if the source names any, else by the
    # source's own watch (Consul's blocking queries).
    source = runtime.sources.get  # a source first used after the start is there too
    files = FileWatch(notify, log)
    watches = SourceWatches(source, notify, log)

    def follow(adopted: Resolution) -> set[SourceKey]:
        """Watch what ``adopted``'s outputs read (a secret or key first read by a template
        edited since is watched too), and no longer what they do not. Answers the keys
        whose files are watched anew."""
        covered = watched_files(adopted, source)
        added = files.watch_keys(covered)
        watches.follow(adopted.generation, covered)
        return added

    def follow_later(adopted: Resolution) -> None:
        """Each generation the engine adopts. A file watched anew is read again, as at the
        start: an edit since its read in the generation had no event. (A Consul key
        watched anew needs no such read: its query starts from the generation's index.)"""
        added = follow(adopted)
        read = adopted.generation.fetched
        files.catch_up(lambda key: _answers_otherwise(source(key.scheme), key, read.get(key)),
                       {}, only=added)

    rotation = Rotation(engine, files, watches)
    try:
        follow(resolution)
        for path in template_files:
            files.add_template(path)
        # Started before the engine's thread, which may then change what is watched.
        files.start()
        engine.on_adopt = follow_later
        engine.start(resolution)
        # An edit between the first read and the watch's start has no event: read again.
        first = resolution.generation.fetched
        files.catch_up(lambda key: _answers_otherwise(source(key.scheme), key, first.get(key)),
                       template_marks or {})
    except BaseException:
        rotation.stop()  # what did start (Consul's watches, the engine) does not run on
        raise
    return rotation


def watched_files(resolution: Resolution, source: Callable[[str], Source]
                  ) -> dict[SourceKey, Sequence[Path]]:
    """The files to watch for each value ``resolution``'s outputs read that a file
    answers (a source's :meth:`~Source.watched_files`)."""
    from entrypoint.rotation.source_watches import to_watch

    wanted: dict[SourceKey, Sequence[Path]] = {}
    for key in to_watch(resolution.generation):
        paths = source(key.scheme).watched_files(key.path, key.version)
        if paths:
            wanted[key] = paths
    return wanted


def _answers_otherwise(source: Source, key: SourceKey, item: Fetched | None) -> bool:
    """Whether ``key`` reads otherwise now than ``item`` (None: it was missing)."""
    try:
        now = source.fetch(key.path, key.version)
    except SecretNotFound:
        return item is not None
    except Exception:  # unreadable since its read: the engine's read says why
        return True
    return item is None or not now.answers_as(item)
