"""Stopping the app: its stop signal, kill_timeout, SIGKILL, and the drain before it.

A mixin of :class:`~entrypoint.process.supervisor.Supervisor`, apart so that each file
reads in one sitting; every method runs on the supervisor's main loop.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

from entrypoint.process import signals
from entrypoint.process.child import Child
from entrypoint.process.events import Event, Fatal, Restart, RunCommand, SignalChild
from entrypoint.process.forward import Forwarder

if TYPE_CHECKING:
    from entrypoint.process.supervisor import ProcessOptions, _Item

TICK = 1.0  # the loop reaps at least this often even if a SIGCHLD is somehow missed


class Stopping:
    _options: ProcessOptions
    _log: logging.Logger
    _forwarder: Forwarder
    _deferred: list[Event]
    _exit_code: int | None
    _child: Child | None

    def _get(self, timeout: float) -> _Item | None:
        raise NotImplementedError

    def _reap(self) -> None:
        raise NotImplementedError

    def _report(self, error: BaseException) -> int:
        raise NotImplementedError

    def _stopping(self, *, restart: bool) -> None:
        raise NotImplementedError

    def _stop(self, child: Child, signum: int, *, restart: bool) -> None:
        """Send ``signum``, wait up to kill_timeout, then SIGKILL. Returns when the child
        and (with signal_group) its whole process group are gone."""
        child.stopping = True
        group = self._options.signal_group
        if child.running or group:
            signals.send(child.pid, signum, group=group)
        deadline = time.monotonic() + self._options.kill_timeout
        killed = False
        # Its own loop, not the main one: it waits for one child to go under a deadline;
        # a stop signal escalates to SIGKILL and actions wait for the next child.
        while child.running or (group and signals.group_alive(child.pid)):
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                self._log.warning("child did not stop within %gs of %s; sending SIGKILL",
                                  self._options.kill_timeout, signals.name(signum))
                killed = self._kill(child)
            item = self._get(TICK if killed else min(TICK, left))
            if isinstance(item, int) and item in signals.SHUTDOWN:
                if restart:
                    self._log.info("received %s during a restart: the child will not be "
                                   "started again", signals.name(item))
                    self._exit_code, restart = 128 + item, False
                elif not killed:
                    self._log.warning("received %s again: killing the child now",
                                      signals.name(item))
                    killed = self._kill(child)
            elif isinstance(item, int) and item in signals.FORWARDED:
                if restart or child.running:  # during a restart: held for the new child
                    self._forwarder.forward(None if restart else child, item)
            elif isinstance(item, Fatal):
                self._exit_code, restart = self._report(item.error), False
            elif isinstance(item, Restart | SignalChild | RunCommand):
                self._deferred.append(item)
            self._reap()

    def _drain(self, child: Child, signum: int) -> None:
        """Tell the stopping callbacks (the ready file goes), then keep the app serving for
        stop_delay while load balancers stop sending it requests; a second stop signal
        ends the wait. kill_timeout counts from the app's own stop signal, after this."""
        self._stopping(restart=False)
        delay = self._options.stop_delay
        if delay <= 0 or not child.running:
            return
        self._log.info("received %s: the app gets its stop signal in %gs (stop_delay)",
                       signals.name(signum), delay, extra={"event": "drain", "delay": delay})
        deadline = time.monotonic() + delay
        # Its own loop, not the main one: the app keeps serving until the deadline, a
        # second stop signal cuts it short, and actions are dropped as the app stops.
        while child.running and (left := deadline - time.monotonic()) > 0:
            item = self._get(min(TICK, left))
            if isinstance(item, int) and item in signals.SHUTDOWN:
                self._log.info("received %s again: stopping the app now", signals.name(item))
                return
            if isinstance(item, int) and item in signals.FORWARDED:
                self._forwarder.forward(child, item)
            elif isinstance(item, Fatal):
                self._exit_code = self._report(item.error)
                return
            self._reap()  # rotation actions that arrive now are dropped: the app stops

    def _kill(self, child: Child) -> bool:
        # Never kill() a reaped pid: it may belong to someone else by now.
        if child.running or self._options.signal_group:
            signals.send(child.pid, signal.SIGKILL, group=self._options.signal_group)
        return True

    def _kill_everything(self) -> None:
        child = self._child
        if child is not None:
            self._kill(child)
            deadline = time.monotonic() + 5.0
            while child.running and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.01)
