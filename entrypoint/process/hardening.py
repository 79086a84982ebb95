"""What keeps the app from reaching into the entrypoint, and from gaining privileges.

- ``not_dumpable``: ``PR_SET_DUMPABLE`` 0 on the entrypoint, so that an app running with
  the same uid cannot ptrace it, read its memory or ``/proc/<pid>/environ`` (which still
  holds the ``VAULT_TOKEN`` it was started with). ``exec`` makes the app dumpable again:
  only the entrypoint is protected, as intended.
- ``no_new_privs`` (opt-in): ``PR_SET_NO_NEW_PRIVS`` on the thread that starts the app.
  It is inherited and cannot be undone, so a setuid or file-capability binary run by the
  app gains nothing. The entrypoint itself never executes one.
- ``death_signal_argv``: the app gets a signal when the entrypoint dies (tini's ``-p``),
  so a SIGKILLed entrypoint that is not PID 1 does not leave an app running on credentials
  nobody renews. The kernel clears that setting on a change of uid, so it is set in the
  child after the switch, by a few lines of Python run before the app (which also make
  the switch, so that they run as root and the interpreter need not be the app user's).
  That wrapper starts with an empty environment: the app's, which the app's references
  and templates fill (an ``LD_PRELOAD``, ``GCONV_PATH`` or ``PYTHON*`` would be loaded
  by the dynamic loader or the interpreter, as root), comes through a pipe
  (``send_environment``) and is first used by the ``execve`` of the app.
- ``keep_only``: exec mode's counterpart of Popen's ``close_fds``: the app inherits 0, 1,
  2 and what the user passes, never a descriptor its caller left open by mistake.
"""

from __future__ import annotations

import ctypes
import os
import sys

from entrypoint.errors import ConfigError

TYPE_CHECKING = False  # not typing's, nor collections.abc: the fast --exec path imports this
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from entrypoint.process.identity import Identity

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

# Run as ``python -I -S -c CODE SIGNAL PARENT UID GID GROUPS ENVFD PATH ARGV...`` in the
# child, as root when a user is set, with an empty environment: the app's is read from
# ENVFD (``send_environment``: its length, a newline, then NUL-separated ``KEY=VALUE``)
# and closed, and only the app's execve gets it. A short read (the entrypoint died while
# sending) is refused rather than starting the app with half its environment. The switch
# of user is done here, before the prctl, which it would clear, and the interpreter need
# not be one the app's user may run. If the parent died before the prctl, the signal
# would never come: deliver it now. Python ignores SIGPIPE and SIGXFSZ, and an ignored
# disposition would survive exec.
_DEATH_SIGNAL_CODE = """\
import ctypes, os, signal, sys
sig, parent, uid, gid, envfd = (int(a) for a in (*sys.argv[1:5], sys.argv[6]))
chunks = []
while chunk := os.read(envfd, 65536):
    chunks.append(chunk)
os.close(envfd)
size, _, body = b"".join(chunks).partition(b"\\n")
if not size.isdigit() or int(size) != len(body):
    sys.stderr.write("entrypoint: the app's environment did not arrive whole\\n")
    sys.exit(126)
env = dict(item.split(b"=", 1) for item in body.split(b"\\0")) if body else {}
try:
    if uid >= 0:
        os.setgroups([int(g) for g in sys.argv[5].split(",") if g])
        os.setgid(gid)
        os.setuid(uid)
except OSError as exc:
    sys.stderr.write(f"entrypoint: cannot switch to uid {uid}: {exc.strerror}\\n")
    sys.exit(126)
if ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0) != 0:
    sys.exit("entrypoint: cannot set the parent-death signal: "
             + os.strerror(ctypes.get_errno()))
if os.getppid() != parent:
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
    signal.signal(s, signal.SIG_DFL)
try:
    os.execve(sys.argv[7], sys.argv[8:], env)
except OSError as exc:
    sys.stderr.write(f"entrypoint: {sys.argv[7]}: cannot execute: {exc.strerror}\\n")
    sys.exit(127 if exc.errno == 2 else 126)
"""


def _prctl(option: int, value: int) -> int:
    """0, or the errno of a failed prctl (ENOSYS off Linux)."""
    if not sys.platform.startswith("linux"):
        return 38
    # CDLL(None): the symbols already loaded, libc's among them. find_library would run
    # ldconfig in a subprocess on every start, for nothing.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        return ctypes.get_errno() or 1
    return 0


def not_dumpable() -> int:
    """Make this process not dumpable; 0 or the errno (the caller warns)."""
    return _prctl(PR_SET_DUMPABLE, 0)


def no_new_privs() -> int:
    """Set no_new_privs on the calling thread and everything it starts; 0 or the errno."""
    return _prctl(PR_SET_NO_NEW_PRIVS, 1)


def death_signal_argv(signum: int, path: str, argv: Sequence[str],
                      identity: Identity | None, env_fd: int) -> list[str]:
    """The command that reads the app's environment from ``env_fd``, becomes ``identity``,
    sets ``signum`` as the parent-death signal, then execs ``path``. Start it as this
    process's user (it switches by itself), with an empty environment and ``env_fd``
    passed, then ``send_environment`` to the pipe's other end."""
    uid, gid, groups = -1, -1, ""
    if identity is not None:
        uid, gid = identity.uid, identity.gid
        groups = ",".join(str(g) for g in identity.groups)
    return [sys.executable, "-I", "-S", "-c", _DEATH_SIGNAL_CODE, str(signum),
            str(os.getpid()), str(uid), str(gid), groups, str(env_fd), path, *argv]


def send_environment(fd: int, env: Mapping[str, str]) -> None:
    """Write ``env`` for the wrapper of ``death_signal_argv`` and close ``fd``. A wrapper
    that is gone (killed before it read) is not an error here: it never starts the app."""
    body = b"\0".join(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
    data = memoryview(b"%d\n" % len(body) + body)
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def set_death_signal(signum: int) -> int:
    """For exec mode, where the app *is* this process: it gets ``signum`` when our parent
    dies. Call after the switch of user, which clears it. 0 or the errno."""
    return _prctl(PR_SET_PDEATHSIG, signum)


def check_pass_fds(fds: Iterable[int], origin: str) -> tuple[int, ...]:
    """The descriptors to pass, each checked to be open now (our caller opened it)."""
    checked = []
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            raise ConfigError(f"{origin}: pass_fds: descriptor {fd} is not open",
                              hint="list descriptors the entrypoint was started with, "
                                   "e.g. 3 for the first socket of socket activation") from None
        checked.append(fd)
    return tuple(sorted(set(checked)))


def keep_only(pass_fds: Sequence[int]) -> None:
    """Close every descriptor but 0, 1, 2 and ``pass_fds``, and make those inheritable.

    Just before exec: from here on, only the exec itself and its error message run.
    """
    keep = sorted({0, 1, 2, *pass_fds})
    for low, high in zip(keep, [*keep[1:], None], strict=True):
        os.closerange(low + 1, high if high is not None else os.sysconf("SC_OPEN_MAX"))
    for fd in pass_fds:
        os.set_inheritable(fd, True)
