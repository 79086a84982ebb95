"""In-process residents on a local secrets folder, for the file watch's unit tests: made
with no wait and no control socket, shut down at the end; and the restarts they post."""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

from entrypoint.commands.run import Resident
from entrypoint.config.model import Config
from entrypoint.plan.resolution import Runtime
from entrypoint.process import events
from entrypoint.sources.local.folder import LocalSource
from entrypoint.sources.registry import Sources

DEADLINE = 10.0
Posted = queue.SimpleQueue[object]
Make = Callable[..., Resident]  # (config, env, local source or None) -> Resident


def quiet_config(**fields: Any) -> Config:
    """Acting on each change at once (no wait window), with no control socket."""
    return Config(wait_min=0.0, wait_max=0.0, control_socket="", **fields)


@contextlib.contextmanager
def residents(posted: Posted, log: logging.Logger) -> Iterator[Make]:
    """A maker of residents that post to ``posted``; every one made is shut down."""
    made: list[Resident] = []

    def make(config: Config, env: dict[str, str], local: LocalSource | None = None
             ) -> Resident:
        sources = Sources({"vault": lambda: local}, {}) if local is not None else None
        runtime = Runtime(config, env, log, sources=sources)
        resident = Resident(config, runtime, post=posted.put, log=log)
        made.append(resident)
        return resident

    try:
        yield make
    finally:
        for resident in made:
            resident.shutdown()


def restarts(posted: Posted) -> Iterator[events.Restart]:
    """The restarts posted, as they come, until DEADLINE from the first call."""
    deadline = time.monotonic() + DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = posted.get(timeout=left)
        except queue.Empty:
            return
        if isinstance(event, events.Restart):
            yield event


def next_restart(posted: Posted) -> events.Restart:
    for restart in restarts(posted):
        return restart
    raise AssertionError(f"no restart within {DEADLINE}s")
