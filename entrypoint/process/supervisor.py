"""The resident supervisor: PID 1 for the app.

One main loop owns all state (the child, timers, held signals). Everything else talks to
it through one queue: signal handlers put signal numbers, other threads put events.

- Every signal in ``signals.FORWARDED`` (all but SIGCHLD, SIGPIPE and SIGXFSZ) goes to
  the child, or its process group, rewritten or dropped as ``rewrite_signal`` says.
  SIGTERM and SIGINT also start a shutdown: the app gets ``stop_signal`` for SIGTERM
  (``docker stop`` means "stop") and SIGINT as is; after ``kill_timeout`` it gets
  SIGKILL, and a second SIGTERM/SIGINT sends SIGKILL at once.
- Every zombie is reaped (subreaper when not PID 1); a child stopped for the terminal
  is continued (see terminal.py).
- The exit status is the app's: its code, or 128+N when it died of signal N (0 for a
  status listed in ``success_exit_codes``).
- A restart stops the app completely (stop signal, wait, SIGKILL) before the next one
  starts: two generations never run at once. Signals that arrive meanwhile are held for
  the new child; SIGTERM/SIGINT during a restart cancels it and exits 128+N.
- When the app exits by itself, what remains of its process group gets ``stop_signal``
  and up to ``kill_timeout`` before we exit (tini#180, dumb-init#212).

Use: ``Supervisor(argv, ProcessOptions(), log)``, ``on_shutdown(runtime.close)``, then
``sys.exit(supervisor.run(resolve_environment))``.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint.errors import EX_SOFTWARE, ChildStartError, EntrypointError, report_end
from entrypoint.process import hardening, reaper, signals
from entrypoint.process.child import Child, Launch, spawn
from entrypoint.process.events import Event, Fatal, Restart, RunCommand, SignalChild
from entrypoint.process.forward import Forwarder
from entrypoint.process.identity import Identity, resolve_user
from entrypoint.process.side_commands import SideCommands
from entrypoint.process.stopping import TICK, Stopping
from entrypoint.process.terminal import controlling_terminal, give_terminal, resume_if_held_back

HELD_POLL = 0.05  # how often held signals check whether the new child is ready for them


@dataclass(frozen=True)
class ProcessOptions:
    kill_timeout: float = 30.0
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True
    rewrite_signal: Mapping[int, int] = field(default_factory=dict)  # to 0: drop it
    user: str | None = None
    splay: float = 0.0
    pass_fds: tuple[int, ...] = ()
    parent_death_signal: int = 0
    no_new_privs: bool = False
    success_exit_codes: frozenset[int] = frozenset()  # the app's codes reported as 0
    stop_delay: float = 0.0  # between SIGTERM/SIGINT and the app's stop signal (drain)
    debug: bool = False  # the error that ends the supervisor is logged with its traceback


@dataclass(frozen=True)
class _Prepared:
    env: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class _PrepareFailed:
    error: BaseException


_Item = Event | int | _Prepared | _PrepareFailed


class _Exit(Exception):
    """Leave the main loop with this status (the child is gone by then)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Supervisor(Stopping):
    def __init__(self, argv: Sequence[str], options: ProcessOptions,
                 log: logging.Logger) -> None:
        self._argv = list(argv)
        self._options = options
        self._log = log
        # Resolved now: a bad user is a config error (78) before any secret is fetched.
        self._identity: Identity | None = resolve_user(options.user) if options.user else None
        self._launch = Launch(self._identity, options.pass_fds, options.parent_death_signal)
        if options.no_new_privs and (err := hardening.no_new_privs()):
            self._log.warning("no_new_privs could not be set: %s", os.strerror(err))
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._started_callbacks: list[Callable[[int, int], None]] = []
        self._shutdown_callbacks: list[Callable[[], None]] = []
        self._stopping_callbacks: list[Callable[[bool], None]] = []
        self._child: Child | None = None
        self._env: Mapping[str, str] = {}
        self._commands = SideCommands(log)
        self._forwarder = Forwarder(options.rewrite_signal, options.signal_group, log)
        self._deferred: list[Event] = []  # actions that arrived while no child could take them
        self._restart_due: tuple[float, Restart] | None = None
        self._signals_due: list[tuple[float, SignalChild]] = []
        self._exit_code: int | None = None  # set when a stop must end in exit, not restart
        self._tty = controlling_terminal()
        # Installed at once, so that a SIGTERM while secrets resolve is not lost.
        signals.install(self._queue.put_nowait)
        reaper.become_subreaper(log)

    # -- the API other components use -------------------------------------------------

    def post(self, event: Event) -> None:
        """Hand ``event`` to the main loop; safe from any thread."""
        self._queue.put(event)

    def on_child_started(self, callback: Callable[[int, int], None]) -> None:
        """``callback(pid, generation)``: a child runs on the env of ``Restart.generation``
        (0 for the first start)."""
        self._started_callbacks.append(callback)

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        self._shutdown_callbacks.append(callback)

    def on_stopping(self, callback: Callable[[bool], None]) -> None:
        """``callback(restart)`` runs before the app is asked to stop (the ready file)."""
        self._stopping_callbacks.append(callback)

    def run(self, prepare: Callable[[], Mapping[str, str]]) -> int:
        """Resolve with ``prepare`` (in a worker thread), start the app, supervise it.

        Returns the app's exit status, 128+N when a SIGTERM/SIGINT came before it started,
        or the exit code of the error that stopped it.
        """
        try:
            self._supervise(prepare)
        except _Exit as done:
            code = done.code
        except Exception:
            self._log.exception("internal error in the supervisor; killing the app")
            self._kill_everything()
            code = EX_SOFTWARE
        self._commands.kill_all()
        self._reap()
        for callback in self._shutdown_callbacks:
            try:
                callback()
            except Exception as exc:
                self._log.error("shutdown step failed: %s", exc)
        return code

    # -- phases ------------------------------------------------------------------------

    def _supervise(self, prepare: Callable[[], Mapping[str, str]]) -> None:
        self._start(self._await_prepared(prepare))
        while True:
            self._dispatch(self._get(self._timeout()))
            self._run_due()
            child = self._running_child()  # after a restart, the new one
            if child.running and self._forwarder.holding:
                self._forwarder.release(child)
            self._reap()
            if not child.running:
                self._child_exited(child)

    def _await_prepared(self, prepare: Callable[[], Mapping[str, str]]) -> Mapping[str, str]:
        def work() -> None:
            signals.block_in_this_thread()
            try:
                self._queue.put(_Prepared(prepare()))
            except BaseException as exc:
                self._queue.put(_PrepareFailed(exc))

        threading.Thread(target=work, name="entrypoint-prepare", daemon=True).start()
        # Its own loop, not the main one: there is no child yet, so a stop signal ends
        # the entrypoint at once and every action on the app waits for it to exist.
        while True:
            item = self._get(TICK)
            if isinstance(item, _Prepared):
                return item.env
            if isinstance(item, _PrepareFailed):
                raise _Exit(self._report(item.error))
            if isinstance(item, int) and item in signals.SHUTDOWN:
                self._log.info("received %s before the app started; not starting it",
                               signals.name(item))
                raise _Exit(128 + item)
            if isinstance(item, int) and item in signals.FORWARDED:
                self._forwarder.forward(None, item)  # held until the app runs
            elif isinstance(item, Fatal):
                raise _Exit(self._report(item.error))
            elif isinstance(item, Restart | SignalChild | RunCommand):
                self._deferred.append(item)
            self._reap()

    def _start(self, env: Mapping[str, str], generation: int = 0) -> None:
        try:
            child = spawn(self._argv, env, self._launch)
        except ChildStartError as exc:
            raise _Exit(self._report(exc)) from None
        self._child, self._env = child, env
        if self._tty is not None:
            give_terminal(self._tty, child.pid)
        as_user = f" user={self._identity}" if self._identity else ""
        self._log.info("child started pid=%d%s", child.pid, as_user,
                       extra={"event": "child_started", "pid": child.pid})
        for callback in self._started_callbacks:
            self._guarded(functools.partial(callback, child.pid, generation))
        deferred, self._deferred = self._deferred, []
        for event in deferred:
            self._dispatch(event)

    def _child_exited(self, child: Child) -> None:
        """The app ended by itself: settle the rest of its group, then exit with its code."""
        code = child.status
        assert code is not None
        if self._options.signal_group and signals.group_alive(child.pid):
            self._log.info("stopping what is left of the child's process group")
            self._stop(child, self._options.stop_signal, restart=False)
        raise _Exit(self._app_status(code))

    # -- the loop's inputs -------------------------------------------------------------

    def _get(self, timeout: float) -> _Item | None:
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [when for when, _ in self._signals_due]
        if self._restart_due is not None:
            due.append(self._restart_due[0])
        timeout = min([TICK, *(when - now for when in due)])
        return min(timeout, HELD_POLL) if self._forwarder.holding else timeout

    def _dispatch(self, item: _Item | None) -> None:
        if isinstance(item, int):
            self._on_signal(item)
        elif isinstance(item, Restart):
            self._schedule_restart(item)
        elif isinstance(item, SignalChild):
            delay = self._splay()
            self._signals_due.append((time.monotonic() + delay, item))
        elif isinstance(item, RunCommand):
            if self._restart_due is not None:
                # A restart waits out its splay: the command is for the values it brings,
                # so it runs once the new child does, with the new child's environment.
                self._deferred.append(item)
            else:
                self._commands.start(item, self._env, self._launch)
        elif isinstance(item, Fatal):
            code = self._report(item.error)
            self._exit_code = code
            self._stopping(restart=False)
            if self._child is not None and self._child.running:
                self._stop(self._child, self._options.stop_signal, restart=False)
            raise _Exit(code)

    def _on_signal(self, signum: int) -> None:
        if signum not in signals.FORWARDED:
            return  # SIGCHLD: the reap after every item does the work
        child = self._running_child()
        if signum not in signals.SHUTDOWN:
            self._forwarder.forward(child, signum)
            return
        default = self._options.stop_signal if signum == signal.SIGTERM else signum
        sent = self._options.rewrite_signal.get(signum, default)
        if not sent:
            self._log.info("received %s: dropped (rewrite_signal)", signals.name(signum))
            return
        self._drain(child, signum)
        self._log.info("received %s: stopping the child with %s (SIGKILL in %gs)",
                       signals.name(signum), signals.name(sent), self._options.kill_timeout,
                       extra={"event": "stop", "reason": f"received {signals.name(signum)}",
                              "signal": signals.name(sent), "pid": child.pid})
        self._stop(child, sent, restart=False)
        assert child.status is not None
        raise _Exit(self._app_status(child.status))

    # -- acting on the child -----------------------------------------------------------

    def _stopping(self, *, restart: bool) -> None:
        for callback in self._stopping_callbacks:
            self._guarded(functools.partial(callback, restart))

    def _schedule_restart(self, event: Restart) -> None:
        if self._restart_due is not None:
            # One restart already waits out its splay: it will use the newest env.
            self._restart_due = (self._restart_due[0], event)
            return
        delay = self._splay()
        if delay:
            self._log.info("restart in %.1fs (splay): %s", delay, event.reason)
        self._restart_due = (time.monotonic() + delay, event)

    def _run_due(self) -> None:
        now = time.monotonic()
        for due in [d for d in self._signals_due if d[0] <= now]:
            self._signals_due.remove(due)
            signum, reason = due[1].signum, due[1].reason
            self._forwarder.deliver(self._running_child(), signum,
                                    f"signalled child {signals.name(signum)}: {reason}",
                                    event="signal", reason=reason)
        if self._restart_due is not None and self._restart_due[0] <= now:
            restart = self._restart_due[1]
            self._restart_due = None
            self._restart(restart)

    def _restart(self, event: Restart) -> None:
        self._log.info("restarting: %s", event.reason,
                       extra={"event": "restart", "reason": event.reason})
        self._stopping(restart=True)
        self._stop(self._running_child(), self._options.stop_signal, restart=True)
        if self._exit_code is not None:
            raise _Exit(self._exit_code)
        newer = [e for e in self._deferred if isinstance(e, Restart)]
        if newer:
            # A later change arrived while we stopped: start straight on its environment.
            self._log.info("restarting with the newer change instead: %s", newer[-1].reason)
            event = newer[-1]
            self._deferred = [e for e in self._deferred if not isinstance(e, Restart)]
        self._start(event.env, event.generation)

    # -- housekeeping ------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, status in reaper.reap():
            child = self._child
            if os.WIFSTOPPED(status):
                if child is not None and pid == child.pid:
                    resume_if_held_back(self._tty, pid, status, self._log)
            elif child is not None and pid == child.pid:
                child.reaped(status)
                reaper.log_end(self._log, status, asked_to_stop=child.stopping)
            elif not self._commands.reaped(pid, status):
                self._log.debug("reaped orphan pid=%d %s", pid, reaper.describe(status))

    def _app_status(self, code: int) -> int:
        """The app's status, unless we decided already; listed ones mean 0 (tini -e)."""
        if self._exit_code is not None:
            return self._exit_code
        return 0 if code in self._options.success_exit_codes else code

    def _running_child(self) -> Child:
        assert self._child is not None, "the main loop runs only once a child was started"
        return self._child

    def _splay(self) -> float:
        return random.uniform(0, self._options.splay) if self._options.splay > 0 else 0.0

    def _guarded(self, fn: Callable[[], None]) -> None:
        """Run another component's code on the loop: its EntrypointError is fatal, any
        other exception is a bug that is logged without taking the app down."""
        try:
            fn()
        except EntrypointError as exc:
            self._dispatch(Fatal(exc))
        except Exception:
            self._log.exception("a callback on the supervisor's loop failed")

    def _report(self, error: BaseException) -> int:
        return report_end(self._log, error, self._options.debug)
