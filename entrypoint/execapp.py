"""``--exec``: replace this process with the app (same PID, nothing resident)."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from entrypoint.child import exec_error, find_executable
from entrypoint.errors import EX_NOT_EXECUTABLE


def exec_command(command: list[str], env: Mapping[str, str], user: str | None) -> int:
    """Never returns on success; raises ``ChildStartError`` (126/127) when CMD cannot run."""
    identity = None
    if user:
        from entrypoint.identity import become, resolve_user

        identity = resolve_user(user)
    path = find_executable(command[0], env.get("PATH", os.defpath))
    if identity is not None:
        become(identity)
    # execve keeps ignored dispositions and the mask: Python ignores SIGPIPE and SIGXFSZ,
    # and an app must not inherit that (tini's restore_signals).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        os.execve(path, command, dict(env))
    except OSError as exc:
        raise exec_error(command[0], path, exc, identity) from None
    return EX_NOT_EXECUTABLE  # unreachable: execve replaced the process
