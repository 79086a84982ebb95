"""Starting one process from an argument list, with a clean slate, as tini does.

The child gets its own process group (so signals can go to everything it starts, and a
terminal's Ctrl-C does not reach it twice: once from the TTY, once forwarded by us), an
empty signal mask, default dispositions, our stdin/stdout/stderr as they are (no pipes,
no copying) and no other descriptor but those the user asked to pass. It is never run
through a shell.

It is started with ``subprocess.Popen``, whose C fork/exec switches identity and closes
descriptors without running Python code in the child, so it is safe while other threads
run (``preexec_fn`` and ``os.fork`` are not). ``os.posix_spawn`` is not used: glibc's
leaves its internal signals 32 and 33 ignored in the child, and an ignored disposition
survives ``exec``. Popen resets every handled signal to the default; the supervisor
keeps no signal at SIG_IGN (see ``signals.install``) and lifts its mask around the start
(``signals.unblocked``), so the child inherits nothing.

A parent-death signal has to be set inside the child, after the switch of identity (which
clears it) and before ``exec``; Popen offers no safe hook there, so the child then runs a
few lines of Python first (``hardening.death_signal_argv``) that switch user, set it and
``exec`` the app. They run as root with an empty environment: the app's environment,
which the app can fill (``LD_PRELOAD``, ``GCONV_PATH``, ``PYTHON*``, ...), reaches them
through a pipe and only the app's ``exec`` uses it.

Exec failures are reported in the parent, which we map to 127 (not found) and 126
(cannot execute), as tini and POSIX shells do.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from entrypoint.errors import EX_NOT_FOUND, ChildStartError
from entrypoint.process import signals
from entrypoint.process.executable import exec_error, find_executable
from entrypoint.process.hardening import death_signal_argv, send_environment
from entrypoint.process.identity import Identity
from entrypoint.process.reaper import exit_code


@dataclass(eq=False)
class Child:
    """One started process. ``status`` is set once it has been reaped."""

    pid: int
    argv0: str
    started: float = field(default_factory=time.monotonic)
    status: int | None = None
    stopping: bool = False  # the supervisor asked it to stop: its exit is not a death
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status is None

    def reaped(self, status: int) -> int:
        self.status = exit_code(status)
        if self._popen is not None:
            # We reaped it with waitpid(-1): tell Popen, or its __del__ would queue the pid
            # for a later waitpid(pid) that could steal the status of a reused pid.
            self._popen.returncode = self.status
        return self.status


@dataclass(frozen=True)
class Launch:
    """How every process the supervisor starts is started: the app and side commands."""

    identity: Identity | None = None
    pass_fds: tuple[int, ...] = ()  # besides 0, 1 and 2, which are always inherited
    death_signal: int = 0  # sent to the child when the entrypoint dies; 0: none


def spawn(argv: Sequence[str], env: Mapping[str, str], launch: Launch = Launch()) -> Child:
    """Start ``argv`` in a new process group; raise ChildStartError(127/126) if it cannot."""
    if not argv:
        raise ChildStartError("no command to run", EX_NOT_FOUND,
                              hint="give the app's command after --")
    path = find_executable(argv[0], env.get("PATH", os.defpath))
    run, executable, start_env = list(argv), path, dict(env)
    identity, pass_fds = launch.identity, launch.pass_fds
    user: dict[str, Any] = {}
    env_pipe: tuple[int, int] | None = None
    if launch.death_signal:
        env_pipe = os.pipe()  # both ends close-on-exec: only pass_fds hands one over
        run = death_signal_argv(launch.death_signal, path, argv, identity, env_pipe[0])
        executable, start_env, pass_fds = run[0], {}, (*pass_fds, env_pipe[0])
    elif identity is not None:
        user = {"user": identity.uid, "group": identity.gid,
                "extra_groups": list(identity.groups)}
    try:
        with signals.unblocked():
            popen = subprocess.Popen(run, executable=executable, env=start_env,
                                     process_group=0, restore_signals=True, close_fds=True,
                                     pass_fds=pass_fds, **user)
    except OSError as exc:
        if env_pipe is not None:
            os.close(env_pipe[1])
        raise exec_error(argv[0], path, exc, identity) from None
    finally:
        if env_pipe is not None:
            os.close(env_pipe[0])
    if env_pipe is not None:
        send_environment(env_pipe[1], env)
    return Child(pid=popen.pid, argv0=argv[0], _popen=popen)
