"""The resident path: resolve in the background, start the app, keep it on valid values."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from entrypoint.config import Config
from entrypoint.runtime import Resolution, Runtime


def render_outputs(config: Config, runtime: Runtime, resolution: Resolution) -> None:
    """Render env templates into the app's environment and file templates to disk."""
    if not (config.template or config.env_template):
        return
    from entrypoint.templates import render_all

    render_all(config, runtime, resolution)


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

    def prepare() -> Mapping[str, str]:
        resolution = runtime.resolve()
        render_outputs(config, runtime, resolution)
        return resolution.child_env()

    supervisor.on_shutdown(runtime.close)
    return supervisor.run(prepare)
