"""Finding the app's executable and naming why it could not be run; shared by the
supervisor's :func:`~entrypoint.process.child.spawn` and exec mode. Imports nothing heavy:
the fast ``--exec`` path uses it."""

from __future__ import annotations

import errno
import os

from entrypoint.errors import EX_NOT_EXECUTABLE, EX_NOT_FOUND, ChildStartError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from entrypoint.process.identity import Identity


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
