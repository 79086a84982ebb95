"""Reaping: every zombie, ours or adopted, and the exit status as a shell would report it."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import sys
from collections.abc import Iterator

from entrypoint.process.signals import name as signal_name

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper(log: logging.Logger) -> None:
    """Adopt orphaned descendants when we are not PID 1, so they can be reaped.

    PID 1 adopts them anyway. Anywhere else (``docker run --init``, a test, systemd) the
    kernel would hand them to some other process, and they would escape reaping and the
    final wait (tini's ``reaper_check``).
    """
    if os.getpid() == 1:
        return
    if not sys.platform.startswith("linux"):
        log.warning("not running as PID 1, and child subreaper is Linux only: "
                    "orphaned grandchildren will not be reaped by the entrypoint")
        return
    # The process's own symbols, libc's among them (as in hardening.py): find_library
    # runs ldconfig in a subprocess at every start, and ctypes.util imports tempfile,
    # shutil, bz2 and lzma into the resident process, for one prctl.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        log.warning("not running as PID 1 and could not register as child subreaper (%s): "
                    "orphaned grandchildren may be left as zombies; run the entrypoint as "
                    "PID 1 (ENTRYPOINT in exec form)", os.strerror(err))
    else:
        log.debug("not PID 1: registered as child subreaper")


def reap() -> Iterator[tuple[int, int]]:
    """Yield ``(pid, wait status)`` for every child that has exited or stopped, without
    blocking (a stop: ``os.WIFSTOPPED(status)``, the child is still there)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
        except ChildProcessError:
            return
        except OSError as exc:  # pragma: no cover - EINTR is retried by Python itself
            if exc.errno == errno.EINTR:
                continue
            raise
        if pid == 0:
            return
        yield pid, status


def exit_code(status: int) -> int:
    """The child's code, or 128+N when it died of signal N (as sh does), mod 256."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    return code % 256


def describe(status: int) -> str:
    """``code=143 (killed by SIGTERM)`` or ``code=3`` for log lines."""
    code = exit_code(status)
    if os.WIFSIGNALED(status):
        return f"code={code} (killed by {signal_name(os.WTERMSIG(status))})"
    return f"code={code}"


def log_end(log: logging.Logger, status: int, *, asked_to_stop: bool) -> None:
    """One line for the app's end, at a level that says whether it is news."""
    described = describe(status)
    code = exit_code(status)
    fields = {"event": "child_exited", "exit_code": code, "asked_to_stop": asked_to_stop}
    if asked_to_stop:
        log.info("child stopped %s", described, extra=fields)
    elif code == 0:
        log.info("child exited %s", described, extra=fields)
    elif code == 128 + signal.SIGKILL:
        log.error("child exited %s: out of memory?", described, extra=fields)
    else:
        log.warning("child exited %s", described, extra=fields)
