"""Side commands (``command:<argv>`` on a change): run beside the app, never instead of it.

They get the app's current environment, user and parent-death signal (not its
``pass_fds``), their own process group (so signals forwarded to the app's group do not
reach them), and are reaped and logged by the supervisor's loop like everything else.
One still running when the supervisor exits is killed: it belongs to a container that is
going away.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Mapping

from entrypoint.errors import ChildStartError
from entrypoint.process import reaper, signals
from entrypoint.process.child import Child, Launch, spawn
from entrypoint.process.events import RunCommand


class SideCommands:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._running: dict[int, tuple[Child, RunCommand]] = {}

    def start(self, event: RunCommand, env: Mapping[str, str], launch: Launch) -> None:
        """Start ``event.argv``; a failure to start is logged, never fatal to the app."""
        try:
            # The descriptors in pass_fds are the app's (a listening socket): not theirs.
            command = spawn(event.argv, env, dataclasses.replace(launch, pass_fds=()))
        except ChildStartError as exc:
            self._log.error("command for %s could not start: %s", event.reason, exc)
            return
        self._running[command.pid] = (command, event)
        self._log.info("command %s started pid=%d: %s", event.argv[0], command.pid,
                       event.reason, extra={"event": "command", "pid": command.pid,
                                            "reason": event.reason})

    def reaped(self, pid: int, status: int) -> bool:
        """Log the end of ``pid`` if it is one of ours; False if it is not."""
        if pid not in self._running:
            return False
        command, event = self._running.pop(pid)
        code = command.reaped(status)
        self._log.log(logging.INFO if code == 0 else logging.WARNING,
                      "command %s exited %s", event.argv[0], reaper.describe(status))
        return True

    def kill_all(self) -> None:
        """SIGKILL every command still running (the caller reaps them)."""
        for pid, (_, event) in self._running.items():
            if signals.send(pid, signal.SIGKILL, group=True):
                self._log.warning("killed command %s, still running at exit", event.argv[0])
