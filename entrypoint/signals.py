"""Which signals the supervisor takes, how it takes them, and what the child starts with.

Handlers only enqueue the signal number (``SimpleQueue.put_nowait`` is reentrant); the
main loop does the rest. No logging, locks or I/O in handler context: that is how
gunicorn deadlocked on its logging lock (gunicorn PR #3441).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType

# Forwarded to the child (or its group). SIGCHLD only wakes the loop to reap; SIGURG
# (Go runtime preemption noise), job-control and synchronous signals are never forwarded.
FORWARDED: frozenset[int] = frozenset({
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT,
})
# Received by the supervisor, these also mean "the container is being stopped".
SHUTDOWN: frozenset[int] = frozenset({signal.SIGTERM, signal.SIGINT})
# Signals whose default action would end a process: sending one to a child that has not
# installed its handler yet would kill it (dumb-init#136), so deliveries to a new child wait.
FATAL_BY_DEFAULT: frozenset[int] = frozenset({
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE, signal.SIGVTALRM, signal.SIGPROF,
})

# Every signal the child should find at its default disposition. glibc's own signals
# (32 and 33, between SIGSYS and SIGRTMIN) are not ours to set.
CHILD_DEFAULTS: frozenset[int] = frozenset(
    s for s in signal.valid_signals()
    if (s < 32 or signal.SIGRTMIN <= s <= signal.SIGRTMAX)
    and s not in (signal.SIGKILL, signal.SIGSTOP))


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def install(put: Callable[[int], None]) -> None:
    """Route FORWARDED and SIGCHLD to ``put`` and give the process a clean signal mask.

    The mask is cleared because threads and ``subprocess`` children inherit it: a mask
    handed down from our own parent would otherwise block signals in the child too.
    Signals our parent left ignored get a no-op handler instead, because an ignored
    disposition survives ``exec`` and the child must start with the defaults.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        put(signum)

    def ignore(signum: int, frame: FrameType | None) -> None:
        pass

    for signum in sorted(FORWARDED | {signal.SIGCHLD}):
        signal.signal(signum, handler)
    for signum in sorted(CHILD_DEFAULTS - FORWARDED - {signal.SIGCHLD, signal.SIGPIPE}):
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, ignore)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def block_in_this_thread() -> None:
    """Keep the handled signals off a worker thread, so the kernel delivers them to the
    main thread and wakes its queue at once (threads started from here inherit this)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})


def handles(pid: int, signum: int) -> bool | None:
    """Whether ``pid`` has a handler for ``signum`` or ignores it (None: cannot tell)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except (OSError, ValueError):
        return None
    try:
        mask = int(fields["SigCgt"], 16) | int(fields["SigIgn"], 16)
    except (KeyError, ValueError):
        return None
    return bool(mask & (1 << (signum - 1)))


def send(pid: int, signum: int, *, group: bool) -> bool:
    """Send to ``pid``'s process group or to ``pid`` alone; False if nobody is left."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
