"""``--exec``: replace this process with the app (same PID, nothing resident)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping

from entrypoint.errors import EX_NOT_EXECUTABLE, EX_NOT_FOUND, ChildStartError


def exec_command(command: list[str], env: Mapping[str, str], user: str | None) -> int:
    """Never returns on success; raises :class:`ChildStartError` when CMD cannot run."""
    program = command[0]
    if "/" not in program and shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise ChildStartError(f"command {program!r} not found in PATH", EX_NOT_FOUND)
    if user:
        from entrypoint.identity import resolve_user

        identity = resolve_user(user)
        os.setgroups(list(identity.groups))
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    try:
        os.execvpe(program, command, dict(env))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ChildStartError(f"command {program!r} not found", EX_NOT_FOUND) from None
        raise ChildStartError(f"command {program!r} cannot be executed: {exc.strerror}",
                              EX_NOT_EXECUTABLE) from None
    return EX_NOT_EXECUTABLE  # unreachable: execvpe replaced the process
