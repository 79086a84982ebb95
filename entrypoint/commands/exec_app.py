"""``--exec``: replace this process with the app (same PID, nothing resident)."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from entrypoint.config.model import Config
from entrypoint.errors import EX_NOT_EXECUTABLE, ChildStartError
from entrypoint.process import hardening
from entrypoint.process.child import exec_error, find_executable


def exec_command(command: list[str], env: Mapping[str, str], config: Config) -> int:
    """Never returns on success; raises ``ChildStartError`` (126/127) when CMD cannot run."""
    identity = None
    if config.user:
        from entrypoint.process.identity import become, resolve_user

        identity = resolve_user(config.user)
    path = find_executable(command[0], env.get("PATH", os.defpath))
    if identity is not None:
        become(identity)
    # After become: a change of uid clears the parent-death signal. Here the app is this
    # process, so it gets the signal when whoever started the entrypoint dies (tini -p).
    if config.parent_death_signal and (err := hardening.set_death_signal(
            config.parent_death_signal)):
        raise ChildStartError(f"cannot set parent_death_signal: {os.strerror(err)}",
                              EX_NOT_EXECUTABLE)
    if not config.new_privileges and (err := hardening.no_new_privs()):
        raise ChildStartError(f"cannot set no_new_privs: {os.strerror(err)}",
                              EX_NOT_EXECUTABLE)
    # execve keeps ignored dispositions and the mask: Python ignores SIGPIPE and SIGXFSZ,
    # and an app must not inherit that (tini's restore_signals).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    # Last: a descriptor the caller left open by mistake (or one of ours without
    # close-on-exec) must not reach the app, which may run as another user.
    hardening.keep_only(config.pass_fds)
    try:
        os.execve(path, command, dict(env))
    except OSError as exc:
        raise exec_error(command[0], path, exc, identity) from None
    return EX_NOT_EXECUTABLE  # unreachable: execve replaced the process
