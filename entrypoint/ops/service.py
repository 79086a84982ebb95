"""The operating side of a resident entrypoint, wired in one place: the event observer,
the ready file, the metrics listener and the status answer of the control socket."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from entrypoint.config.model import Config
from entrypoint.errors import EntrypointError
from entrypoint.ops import state
from entrypoint.ops.readiness import ReadyFile

if TYPE_CHECKING:
    from entrypoint.ops.metrics import MetricsServer
    from entrypoint.plan.resolution import Runtime
    from entrypoint.rotation.engine import Engine


class Ops:
    def __init__(self, config: Config, runtime: Runtime, log: logging.Logger,
                 *, mode: str) -> None:
        self.config = config
        self.runtime = runtime
        self.log = log
        self.mode = mode
        self.observer = state.install(log)
        self.ready = ReadyFile(config.ready_file, self.observer, log)
        self.engine: Callable[[], Engine | None] = lambda: None
        self.metrics: MetricsServer | None = None

    def start_metrics(self) -> None:
        """Before secrets are resolved: /live answers during start-up, /ready says no."""
        if not self.config.metrics_listen:
            return
        from entrypoint.ops.metrics import MetricsServer, parse_listen

        parse_listen(self.config.metrics_listen,
                     self.config.origins.get("metrics_listen", "metrics_listen"))
        try:
            self.metrics = MetricsServer(self.config.metrics_listen, self.observer,
                                         self.snapshot, self.log)
        except EntrypointError as exc:
            # Not worth failing the app over: only the metrics are lost, and they say so.
            self.log.warning("metrics will not be served: %s", exc)
            return
        self.metrics.start()

    def snapshot(self) -> dict[str, Any]:
        from entrypoint.commands.status import snapshot

        return snapshot(self.engine(), self.runtime, self.observer, mode=self.mode)

    def status(self) -> bytes:
        from entrypoint.commands.status import encode

        return encode(self.snapshot())

    def stopping(self, restart: bool) -> None:
        """The app is about to be asked to stop (or restarted): not ready from now on.
        /live stays 200: the process is alive and draining, not stuck."""
        self.ready.set(False)

    def close(self) -> None:
        self.ready.set(False)
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
