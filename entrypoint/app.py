"""The resident path: resolve in the background, start the app, keep it on valid values."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from entrypoint.config import Config, OnChange
from entrypoint.errors import EntrypointError
from entrypoint.runtime import Resolution, Runtime

if TYPE_CHECKING:
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.watch import FileWatch


def render_outputs(config: Config, runtime: Runtime, resolution: Resolution) -> list[OnChange]:
    """Render env templates into the app's environment and file templates to disk.

    Returns the ``on_change`` of every file whose content changed.
    """
    if not (config.template or config.env_template):
        return []
    from entrypoint.templates import render_all

    result = render_all(config, runtime, resolution)
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
        engine, watch = start_rotation(config, runtime, resolution, supervisor.post, log)
        keeper.update(engine=engine, watch=watch)
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
        if "engine" in keeper:
            keeper["engine"].child_started(pid)

    def shutdown() -> None:
        if "control" in keeper:
            keeper["control"].stop()
        if "watch" in keeper:
            keeper["watch"].stop()
        if "engine" in keeper:
            keeper["engine"].stop()
        runtime.close()

    supervisor.on_child_started(child_started)
    supervisor.on_shutdown(shutdown)
    return supervisor.run(prepare)


def start_rotation(config: Config, runtime: Runtime, resolution: Resolution,
                   post: Any, log: logging.Logger) -> tuple[Engine, FileWatch]:
    """Start the engine and the watchers that feed it."""
    from entrypoint.rotation.engine import Engine
    from entrypoint.rotation.watch import FileWatch
    from entrypoint.sources.local import LocalSource

    render: Callable[[Resolution], list[OnChange]] = lambda res: []  # noqa: E731
    if config.template or config.env_template:
        from entrypoint.templates import Renderer

        render = Renderer(config, runtime)
    engine = Engine(config, runtime, post, log, render=render)
    watch = FileWatch(lambda reason, keys, rerender: engine.notify(reason, keys,
                                                                   rerender=rerender), log)
    sources = runtime.sources.built()
    for key, fetched in resolution.generation.fetched.items():
        source = sources.get(key[0])
        if fetched.kind == "local" and isinstance(source, LocalSource):
            watch.add_key(key, [source.file_for(key[1])])
        elif fetched.kind == "file":
            from pathlib import Path

            watch.add_key(key, [Path(key[1])])
    for spec in config.template:
        if spec.source is not None:
            watch.add_template(spec.source)
    for env_spec in config.env_template:
        if env_spec.source is not None:
            watch.add_template(env_spec.source)
    engine.start(resolution)
    watch.start()
    return engine, watch
