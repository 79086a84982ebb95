"""The resident path: resolve in the background, start the app, keep it on valid values."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.config import Config, OnChange
from entrypoint.errors import EntrypointError
from entrypoint.runtime import Resolution, Runtime

if TYPE_CHECKING:
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.leases import SourceKey
    from entrypoint.sources.base import Fetched


def render_outputs(config: Config, runtime: Runtime, resolution: Resolution) -> list[OnChange]:
    """Render env templates into the app's environment and file templates to disk.

    Returns the ``on_change`` of every file whose content changed.
    """
    if not (config.template or config.env_template):
        return []
    from entrypoint.templates import render_all

    result = render_all(config, runtime, resolution,
                        allowed=[Path(p) for p in config.template_allowed_dirs])
    return [spec.on_change for spec in result.changed]


def supervise(config: Config, env: Mapping[str, str], log: logging.Logger,
              command: list[str]) -> int:
    from entrypoint.supervisor import ProcessOptions, Supervisor

    options = ProcessOptions(
        kill_timeout=config.kill_timeout, stop_signal=config.stop_signal,
        signal_group=config.signal_group, rewrite_signal=config.rewrite_signal,
        user=config.user, splay=config.splay)
    # Built first so that its signal handlers are in place while secrets are resolved.
    supervisor = Supervisor(command, options, log)
    runtime = Runtime(config, env, log)
    keeper: dict[str, Any] = {}

    def prepare() -> Mapping[str, str]:
        resolution = runtime.resolve()
        render_outputs(config, runtime, resolution)
        rotation = start_rotation(config, runtime, resolution, supervisor.post, log)
        keeper["rotation"] = rotation
        engine = rotation.engine
        if config.control_socket:
            from entrypoint.control import ControlServer

            try:
                control = ControlServer(config.control_socket, engine.rotate_all, log)
            except EntrypointError as exc:
                # Not worth failing the app over: only the manual trigger is lost.
                log.warning("'entrypoint rotate' will not reach this process: %s", exc)
            else:
                control.start()
                keeper["control"] = control
        return resolution.child_env()

    def child_started(pid: int) -> None:
        if "rotation" in keeper:
            keeper["rotation"].engine.child_started(pid)

    def shutdown() -> None:
        if "control" in keeper:
            keeper["control"].stop()
        if "rotation" in keeper:
            keeper["rotation"].stop()
        runtime.close()

    supervisor.on_child_started(child_started)
    supervisor.on_shutdown(shutdown)
    return supervisor.run(prepare)


@dataclass
class Rotation:
    """The engine and everything that feeds it, stopped together."""

    engine: Engine
    watchers: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        self.engine.stop()


def start_rotation(config: Config, runtime: Runtime, resolution: Resolution,
                   post: Any, log: logging.Logger) -> Rotation:
    """Start the engine and the watchers that feed it."""
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.watch import FileWatch
    from entrypoint.sources.local import LocalSource
    from entrypoint.sources.local_consul import LocalConsulSource

    render: Callable[[Resolution], list[OnChange]] = lambda _: []  # noqa: E731
    template_files: list[Path] = []
    if config.template or config.env_template:
        from entrypoint.templates import Renderer, template_sources

        render = Renderer(config, runtime,
                          allowed=[Path(p) for p in config.template_allowed_dirs])
        template_files = template_sources(config)
    engine = Engine(config, runtime, post, log, render=render)

    def notify(reason: str, keys: Iterable[SourceKey], rerender: bool) -> None:
        engine.notify(reason, keys, rerender=rerender)

    files = FileWatch(notify, log)
    consul_keys: list[tuple[SourceKey, Fetched]] = []
    sources = runtime.sources.built()
    for key, fetched in resolution.generation.fetched.items():
        source = sources.get(key[0])
        if fetched.kind == "local" and isinstance(source, LocalSource):
            files.add_key(key, [source.file_for(key[1])])
        elif fetched.kind == "file":
            files.add_key(key, [Path(key[1])])
        elif fetched.kind == "consul" and isinstance(source, LocalConsulSource):
            files.add_key(key, [source.root / key[1]])
        elif fetched.kind == "consul":
            consul_keys.append((key, fetched))
    for path in template_files:
        files.add_template(path)
    rotation = Rotation(engine, [files])
    if consul_keys:
        from entrypoint.rotation.consul_watch import ConsulWatch

        consul = ConsulWatch(sources["consul"], notify, log)  # type: ignore[arg-type]
        for key, fetched in consul_keys:
            consul.add_key(key, fetched)
        rotation.watchers.append(consul)
        consul.start()
    engine.start(resolution)
    files.start()
    return rotation
