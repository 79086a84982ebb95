"""Starting one process from an argument list, with a clean slate, as tini does.

The child gets its own process group (so signals can go to everything it starts, and a
terminal's Ctrl-C does not reach it twice: once from the TTY, once forwarded by us), an
empty signal mask, default dispositions, and our stdin/stdout/stderr as they are: no
pipes, no copying. It is never run through a shell.

Two ways to start it, because neither does everything:

- ``os.posix_spawn`` (the default): resets the mask and *every* disposition in the
  child (``setsigmask``/``setsigdef``), but cannot change uid or gid.
- ``subprocess.Popen(user=, group=, extra_groups=)`` when a user is set: its C fork/exec
  switches identity without running Python code in the child, so it is safe while other
  threads run (``preexec_fn`` and ``os.fork`` are not). It only restores SIGPIPE and
  SIGXFSZ, so the supervisor keeps its own mask empty and no signal at SIG_IGN (see
  ``signals.install``) to hand the same clean slate down.

Both report exec failures in the parent, which we map to 127 (not found) and 126 (cannot
execute), as tini and POSIX shells do.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint.errors import EX_NOT_EXECUTABLE, EX_NOT_FOUND, ChildStartError
from entrypoint.identity import Identity
from entrypoint.reaper import exit_code
from entrypoint.signals import CHILD_DEFAULTS


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


def spawn(argv: Sequence[str], env: Mapping[str, str], identity: Identity | None) -> Child:
    """Start ``argv`` in a new process group; raise ChildStartError(127/126) if it cannot."""
    if not argv:
        raise ChildStartError("no command to run", EX_NOT_FOUND,
                              hint="give the app's command after --")
    path = find_executable(argv[0], env.get("PATH", os.defpath))
    try:
        if identity is None:
            pid = os.posix_spawn(path, list(argv), dict(env), setpgroup=0,
                                 setsigmask=(), setsigdef=CHILD_DEFAULTS)
            return Child(pid=pid, argv0=argv[0])
        # close_fds=False: descriptors we were deliberately given (socket activation,
        # inherited pipes) reach the app as with posix_spawn; ours are all close-on-exec.
        popen = subprocess.Popen(list(argv), executable=path, env=dict(env),
                                 user=identity.uid, group=identity.gid,
                                 extra_groups=list(identity.groups), process_group=0,
                                 restore_signals=True, close_fds=False)
        return Child(pid=popen.pid, argv0=argv[0], _popen=popen)
    except OSError as exc:
        raise exec_error(argv[0], path, exc, identity) from None


def find_executable(command: str, search_path: str) -> str:
    """Resolve ``command`` against the *child's* PATH, as execvp would.

    Done here rather than by posix_spawnp, which searches the supervisor's own PATH.
    """
    if "/" in command:
        return command
    denied: str | None = None
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
    if denied is not None:
        return denied  # exec will fail with EACCES, reported as 126 like execvp/sh do
    raise ChildStartError(f"{command}: command not found in the app's PATH", EX_NOT_FOUND,
                          hint="check the command and the PATH given to the app")


def exec_error(command: str, path: str, exc: OSError,
               identity: Identity | None) -> ChildStartError:
    if exc.errno == errno.ENOENT:
        if os.path.exists(path):
            return ChildStartError(f"{path}: cannot run: its interpreter (#! line) or loader "
                                   "does not exist", EX_NOT_FOUND)
        return ChildStartError(f"{command}: no such file", EX_NOT_FOUND)
    if exc.errno == errno.EPERM and identity is not None:
        return ChildStartError(f"{command}: cannot switch to user {identity}: "
                               f"{os.strerror(exc.errno)}", EX_NOT_EXECUTABLE,
                               hint="the entrypoint must run as root to use user")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ChildStartError(f"{path}: permission denied", EX_NOT_EXECUTABLE,
                               hint="is it executable by the app's user, and not a directory?")
    if exc.errno == errno.ENOEXEC:
        return ChildStartError(f"{path}: not an executable format", EX_NOT_EXECUTABLE,
                               hint="a script needs a #! line")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ChildStartError(f"{path}: cannot execute: {reason}", EX_NOT_EXECUTABLE)


def controlling_terminal() -> int | None:
    """Our stdin when it is a terminal whose foreground we hold, else None."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def give_terminal(fd: int, pgid: int) -> None:
    """Make the child's group the terminal's foreground, so it can read it and gets ^C.

    SIGTTOU is blocked around the call because once a previous child held the foreground
    we are a background process, and tcsetpgrp from the background is only allowed when
    SIGTTOU is blocked or ignored. A child that reads the terminal in the microseconds
    before this call would be stopped by SIGTTIN; tini avoids that by doing this in the
    child before exec, which neither spawn path lets us do.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass  # the terminal went away or is not ours any more: nothing to hand over
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
