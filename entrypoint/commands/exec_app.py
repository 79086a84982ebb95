"""``--exec``: replace this process with the app (same PID, nothing resident).

Imports nothing heavy at the top (no ``signal``, which brings ``enum``; no ``subprocess``):
the fast ``--exec`` path (``fast_exec``) ends here too.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C half: the same calls, no enum
import os

from entrypoint.errors import EX_NOT_EXECUTABLE, ChildStartError
from entrypoint.process import hardening
from entrypoint.process.executable import exec_error, find_executable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping, Sequence
    from types import FrameType

    from entrypoint.config.model import Config


def exec_command(command: list[str], env: Mapping[str, str], config: Config) -> int:
    """Never returns on success; raises ``ChildStartError`` (126/127) when CMD cannot run."""
    return exec_with(command, env, user=config.user,
                     parent_death_signal=config.parent_death_signal,
                     new_privileges=config.new_privileges, pass_fds=config.pass_fds)


def exec_with(command: list[str], env: Mapping[str, str], *, user: str | None,
              parent_death_signal: int | None, new_privileges: bool,
              pass_fds: Sequence[int]) -> int:
    """:func:`exec_command` with the four settings it reads given one by one."""
    identity = None
    if user:
        from entrypoint.process.identity import become, resolve_user

        identity = resolve_user(user)
    path = find_executable(command[0], env.get("PATH", os.defpath))
    if identity is not None:
        become(identity)
    # After become: a change of uid clears the parent-death signal. Here the app is this
    # process, so it gets the signal when whoever started the entrypoint dies (tini -p).
    if parent_death_signal and (err := hardening.set_death_signal(parent_death_signal)):
        raise ChildStartError(f"cannot set parent_death_signal: {os.strerror(err)}",
                              EX_NOT_EXECUTABLE)
    if not new_privileges and (err := hardening.no_new_privs()):
        raise ChildStartError(f"cannot set no_new_privs: {os.strerror(err)}",
                              EX_NOT_EXECUTABLE)
    # execve keeps ignored dispositions and the mask: Python ignores SIGPIPE and SIGXFSZ,
    # and an app must not inherit that (tini's restore_signals).
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    # Last: a descriptor the caller left open by mistake (or one of ours without
    # close-on-exec) must not reach the app, which may run as another user.
    hardening.keep_only(pass_fds)
    try:
        os.execve(path, command, dict(env))
    except OSError as exc:
        raise exec_error(command[0], path, exc, identity) from None
    return EX_NOT_EXECUTABLE  # unreachable: execve replaced the process


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def resolve_and_exec(config: Config, env: Mapping[str, str], log: logging.Logger,
                     command: list[str]) -> int:
    """Resolve once, then ``execve`` the app: same PID, nothing resident."""
    import logging
    import signal

    from entrypoint.plan.resolution import Runtime

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    # As PID 1 a default disposition ignores SIGTERM: make it end the resolution instead.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupted)
    try:
        runtime = Runtime(config, env, log)
        try:
            resolution = runtime.resolve()
            from entrypoint.commands.run import render_outputs

            render_outputs(config, runtime, resolution)
        finally:
            runtime.close()
    except _Interrupted as exc:
        log.info("stopped by %s before the app started", signal.Signals(exc.signum).name)
        return 128 + exc.signum
    child_env = resolution.child_env()
    log.info("exec %s", command[0])
    logging.shutdown()
    return exec_command(command, child_env, config)
